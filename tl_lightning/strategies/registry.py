"""Strategies by name: each registers itself in its own file (``@STRATEGIES.register()``); its config is
conf/strategy/<name>.yaml."""

from tl_lightning.registry import STRATEGIES
from tl_lightning.strategies.base import Strategy


def strategy_class(name: str) -> type:
    return STRATEGIES.get(name)


def build_strategy(cfg, context=None) -> Strategy:
    """The strategy of ``cfg.name``, given the run's context (tl_lightning.context.RunContext)."""
    return strategy_class(cfg.name)(cfg, context)
