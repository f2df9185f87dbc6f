"""Lightning callbacks from the ``callbacks`` config group, all built one way: Hydra's ``instantiate`` over the
group's nodes. Each node names its ``_target_`` (a class or a factory returning one callback or a list) and is
switched by ``enabled``; ``callbacks.extra.<name>`` adds any other ``{_target_: ..., ...}`` node.
"""

from typing import List

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from tl_lightning.context import RunLayout


def build_callbacks(cfg) -> List[L.Callback]:
    """The enabled callbacks of the group, in its order, then ``extra``'s."""
    callbacks: List[L.Callback] = []
    nodes = [(key, node) for key, node in cfg.items() if key != "extra"] + list((cfg.extra or {}).items())
    for _, node in nodes:
        if node is None or not node.get("enabled", True):
            continue
        spec = OmegaConf.to_container(node, resolve=True)
        spec.pop("enabled", None)
        built = instantiate(spec)
        callbacks.extend(built if isinstance(built, list) else [built])
    return callbacks


def run_checkpoints(run_dir: str, monitor: str, mode: str = "max", save_last: bool = True,
                    save_top_k: int = 1) -> List[ModelCheckpoint]:
    """best.ckpt (by ``monitor``) and, with ``save_last``, last.ckpt every epoch, in <run dir>/checkpoints."""
    layout = RunLayout(run_dir)
    # best.ckpt: what testing, inference and backbone=checkpoint need (weights, config, class names, strategy
    # state), without the optimizer and loop state only resuming needs (last.ckpt has those): about a third
    # of the size, and a third of the write time every time the monitored metric improves
    out = [ModelCheckpoint(dirpath=layout.checkpoint_dir, filename=layout.BEST, monitor=monitor, mode=mode,
                           save_top_k=save_top_k, auto_insert_metric_name=False, save_weights_only=True)]
    if save_last:
        # Lightning's save_last=True rewrites last.ckpt only when a best checkpoint was saved in the same
        # step; resume needs the latest state, so a second callback writes it every epoch.
        out.append(ModelCheckpoint(dirpath=layout.checkpoint_dir, filename=layout.LAST, monitor=None, save_top_k=1,
                                   every_n_epochs=1, enable_version_counter=False, auto_insert_metric_name=False))
    return out
