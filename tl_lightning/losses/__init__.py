"""Loss = a criterion (the ``loss`` config group) + a list of terms (from config and from the strategy)."""

from tl_lightning.losses import fairness  # noqa: F401  registers the demographic_parity and equalized_odds terms
from tl_lightning.losses.criteria import CRITERIA, build_criterion
from tl_lightning.losses.terms import TERM_KINDS, LossTerm, build_terms, register_term, total_loss

__all__ = ["CRITERIA", "TERM_KINDS", "LossTerm", "build_criterion", "build_terms", "register_term", "total_loss"]
