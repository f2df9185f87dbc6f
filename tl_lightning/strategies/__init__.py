from tl_lightning.strategies.base import Strategy
from tl_lightning.strategies.registry import STRATEGIES, build_strategy

__all__ = ["Strategy", "STRATEGIES", "build_strategy"]
