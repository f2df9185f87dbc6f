"""Temperature scaling (Guo et al. 2017), ``callbacks.temperature_scaling``: once fit ends, one temperature T is
fitted on the validation logits of the best checkpoint (minimum NLL of softmax(logits / T)) and folded into its
linear head (weight / T, bias / T), so the test that follows, ``tl-eval``, ``tl-predict``, ``backbone=checkpoint``
and the exported ONNX model all give the calibrated probabilities without knowing about it; the predicted classes do
not change. best.ckpt records T (``tl_lightning.temperature``); summary.json's ``temperature_scaling`` gives the
validation NLL and ECE before and after (the test ECE, ``diagnostics.calibration.test_ece``, is the calibrated one).
"""

import logging
import math
from typing import Any, Dict

import lightning as L
import torch
from torch import nn

from tl_lightning.atomic import atomic_torch_save
from tl_lightning.batch import collect

log = logging.getLogger(__name__)


def fit_temperature(logits: torch.Tensor, target: torch.Tensor, max_iter: int = 200) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T) (L-BFGS on log T, float64)."""
    z, y = logits.double(), target.long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def ece(logits: torch.Tensor, target: torch.Tensor, bins: int = 15) -> float:
    """Expected calibration error: |confidence - accuracy| over equal-width confidence bins, weighted by size (the
    metric every evaluation stage logs as <stage>/ece)."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    return float(multiclass_calibration_error(logits.float().softmax(-1), target.long(), logits.shape[-1], n_bins=bins,
                                              norm="l1"))


def scores(logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0) -> Dict[str, float]:
    scaled = logits.double() / temperature
    return {"nll": float(nn.functional.cross_entropy(scaled, target.long())), "ece": ece(scaled, target)}


def fold_into_head(head: nn.Module, temperature: float) -> None:
    """logits / T from the head itself: its linear layer's weight and bias divided by T."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 1:
        raise ValueError(f"temperature scaling folds T into one linear head layer; this head has {len(linears)}")
    with torch.no_grad():
        linears[0].weight.div_(temperature)
        if linears[0].bias is not None:
            linears[0].bias.div_(temperature)


class TemperatureScaling(L.Callback):
    def __init__(self):
        self.record: Dict[str, Any] = {}

    def on_fit_end(self, trainer, pl_module) -> None:
        path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not path:
            log.warning("temperature scaling needs best.ckpt (callbacks.model_checkpoint): not fitted")
            return
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        pl_module.load_state_dict(checkpoint["state_dict"], strict=pl_module.strict_loading)
        # every rank scores the whole validation split (not its shard), so every rank finds the same T
        dm = trainer.datamodule  # its hook makes data.cache's uint8 batches model input, as in the fit
        got = collect(lambda b: pl_module.restrict(pl_module(dm.on_after_batch_transfer(b, 0)["inputs"]), b),
                      dm.val_dataloader(), [pl_module])
        logits, target = got["outputs"], got["target"]
        if not len(target):
            log.warning("temperature scaling: the validation split is empty: not fitted")
            return
        t = fit_temperature(logits, target)
        if not math.isfinite(t) or t <= 0:
            log.warning("temperature scaling found no finite temperature (T=%s): not applied", t)
            return
        before, after = scores(logits, target), scores(logits, target, t)
        fold_into_head(pl_module.head, t)
        own = pl_module.state_dict()
        checkpoint["state_dict"] = {k: (own[k] if k.startswith("head.") else v) for k, v in checkpoint["state_dict"].items()}
        checkpoint.setdefault("tl_lightning", {})["temperature"] = t
        if trainer.is_global_zero:
            atomic_torch_save(checkpoint, path)
        trainer.strategy.barrier()
        self.record = {"temperature": t, "val_nll_before": before["nll"], "val_nll_after": after["nll"],
                       "val_ece_before": before["ece"], "val_ece_after": after["ece"]}
        log.info("temperature scaling: T=%.3f on validation, NLL %.4f -> %.4f, ECE %.4f -> %.4f", t, before["nll"],
                 after["nll"], before["ece"], after["ece"])

    def summary_sections(self) -> Dict[str, Any]:
        return {"temperature_scaling": self.record} if self.record else {}
