"""The one batch shape every datamodule yields, and the one loop that evaluates a model over a loader.

A batch is a dict (Lightning moves dicts to the device on its own):
``inputs`` (an image tensor, or a mapping of token tensors), ``target`` (class ids), ``index``
(dataset index of each sample, for per-sample bookkeeping) and ``group`` (a slice label per sample,
-1 where the dataset has none).
"""

from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Sequence

import torch
from lightning_utilities.core.apply_func import apply_to_collection
from torch import nn

Batch = Dict[str, Any]
NO_GROUP = -1
KEYS = ("inputs", "target", "index", "group")


def sample(inputs: Any, target: int, index: int, group: int = NO_GROUP) -> Batch:
    """One sample in the batch shape (the default collate stacks these into a batch)."""
    return {"inputs": inputs, "target": target, "index": index, "group": group}


def in_memory_format(inputs, channels_last: bool):
    """An image batch in the model's memory format (``trainer.channels_last``); anything else unchanged."""
    if channels_last and isinstance(inputs, torch.Tensor) and inputs.ndim == 4:
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def to_device(batch: Batch, device) -> Batch:
    """Every tensor of the batch (nested mappings and sequences too) on ``device``. lightning_utilities' walk, the one
    Lightning's own ``move_data_to_device`` uses, without importing Lightning (seconds, for tl-predict)."""
    device = torch.device(device)
    return apply_to_collection(batch, torch.Tensor, lambda t: t.to(device, non_blocking=device.type == "cuda"))


def batch_size(batch: Batch) -> int:
    return len(batch["target"])


@contextmanager
def eval_mode(modules: Sequence[nn.Module]):
    """Modules in eval mode for the block; each gets its own earlier mode back (also per submodule)."""
    saved = [[(m, m.training) for m in module.modules()] for module in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for pairs in saved:
            for m, mode in pairs:
                m.training = mode


def device_batches(loader: Iterable[Batch], modules: Sequence[nn.Module], device=None,
                   grad: bool = False) -> Iterator[Batch]:
    """The loader's batches on the modules' device, with the modules in eval mode (and no autograd unless
    ``grad``): the shared part of evaluation, feature extraction and Fisher estimates."""
    device = device or next(modules[0].parameters()).device
    with eval_mode(modules), torch.set_grad_enabled(grad):
        for batch in loader:
            yield to_device(batch, device)


def collect(fn: Callable[[Batch], torch.Tensor], loader: Iterable[Batch], modules: Sequence[nn.Module],
            device=None) -> Dict[str, torch.Tensor]:
    """Run ``fn`` (logits or features of a batch) over a loader in eval mode without grad; return the
    outputs (float32, CPU) with the targets, groups and indices, concatenated in loader order."""
    parts: Dict[str, list] = {"outputs": [], **{key: [] for key in KEYS[1:]}}
    for batch in device_batches(loader, modules, device):
        parts["outputs"].append(fn(batch).float().cpu())
        for key in KEYS[1:]:
            parts[key].append(batch[key].cpu())
    return {k: torch.cat(v) if v else torch.empty(0) for k, v in parts.items()}


def accuracy(outputs: Dict[str, torch.Tensor], target: Optional[torch.Tensor] = None) -> float:
    """Top-1 accuracy of collected logits."""
    target = outputs["target"] if target is None else target
    return float((outputs["outputs"].argmax(-1) == target).float().mean()) if len(target) else 0.0
