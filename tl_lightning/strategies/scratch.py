"""The baseline transfer must beat: the same architecture from random weights, all of it trained."""

from tl_lightning.registry import STRATEGIES
from tl_lightning.strategies.finetune import Finetune


@STRATEGIES.register()
class Scratch(Finetune):
    name = "scratch"
    uses_pretrained = False
