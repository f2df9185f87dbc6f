"""Strategies by name (each config in conf/strategy/<name>.yaml)."""

from tl_lightning.errors import unknown_name
from tl_lightning.strategies.base import Strategy
from tl_lightning.strategies.ewc import EWC
from tl_lightning.strategies.finetune import Finetune
from tl_lightning.strategies.l2sp import L2SP
from tl_lightning.strategies.linear_probe import LinearProbe
from tl_lightning.strategies.lora import IA3, LoRA
from tl_lightning.strategies.lp_ft import LPFT
from tl_lightning.strategies.progressive import Progressive
from tl_lightning.strategies.protonet import ProtoNet
from tl_lightning.strategies.scratch import Scratch

STRATEGIES = {cls.name: cls for cls in (Scratch, LinearProbe, Finetune, Progressive, LPFT, L2SP, EWC, LoRA, IA3, ProtoNet)}


def build_strategy(cfg) -> Strategy:
    if cfg.name not in STRATEGIES:
        raise unknown_name("strategy", cfg.name, STRATEGIES, "strategy.name")
    return STRATEGIES[cfg.name](cfg)
