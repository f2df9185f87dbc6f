"""Loss = a criterion (the ``loss`` config group) + a list of terms (from config and from the strategy).

Criteria register with ``@CRITERIA.register(name)``, term kinds with ``@LOSS_TERMS.register(kind)``
(tl_lightning/registry.py), each in its own file of this package.
"""

from tl_lightning.losses import adaptation, fairness, self_training  # noqa: F401  they register their term kinds
from tl_lightning.losses.criteria import build_criterion
from tl_lightning.losses.terms import LossTerm, build_terms, total_loss

__all__ = ["LossTerm", "build_criterion", "build_terms", "total_loss"]
