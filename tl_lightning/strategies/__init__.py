from tl_lightning.strategies.base import Strategy
from tl_lightning.strategies.registry import build_strategy, strategy_class

__all__ = ["Strategy", "build_strategy", "strategy_class"]
