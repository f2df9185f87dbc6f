"""summary.json: what a run chose, measured and wrote, for sweeps, reports and the next run.

The run's own part (``build_summary``) is the same for every run; everything else arrives as **summary
sections**: any callback, the strategy, or the datamodule fit used may define

    def summary_sections(self) -> Dict[str, Any]:   # {section name: value}

which ``collect_sections`` calls once, after fit and test, and merges into the summary (a dict value merges
into a dict already there: ``{"diagnostics": {"collapse": ...}}`` adds one entry to ``diagnostics``).
"""

import json
import time
from typing import Any, Dict, Iterable, Protocol, runtime_checkable

import torch

from tl_lightning.atomic import atomic_write
from tl_lightning.strategies.capabilities import checkpoint_size


@runtime_checkable
class SummarySection(Protocol):
    def summary_sections(self) -> Dict[str, Any]:
        ...


def collect_sections(summary: Dict[str, Any], contributors: Iterable[Any]) -> Dict[str, Any]:
    """``summary`` with the sections of every contributor that has some, in order (later ones win)."""
    for contributor in contributors:
        if not isinstance(contributor, SummarySection):
            continue
        for name, value in contributor.summary_sections().items():
            if isinstance(value, dict) and isinstance(summary.get(name), dict):
                summary[name] = {**summary[name], **value}
            else:
                summary[name] = value
    return summary


def scalar_metrics(metrics: Dict[str, Any]) -> Dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            out[k] = float(v)
        elif isinstance(v, (int, float)):
            out[k] = float(v)
    return out


def long_tail(datamodule, metrics: Dict[str, float]) -> Any:
    """With a long-tailed budget (data.imbalance): the head, middle and tail thirds of the classes by training
    budget, and each third's mean test accuracy (None otherwise)."""
    budget = datamodule.split_info.get("train_budget")
    if not isinstance(budget, list):
        return None
    names = datamodule.class_names
    order = sorted(range(len(names)), key=lambda c: -budget[c])  # most samples first
    third = max(1, len(names) // 3)
    parts = {"head": order[:third], "middle": order[third:len(names) - third], "tail": order[len(names) - third:]}
    out: Dict[str, Any] = {}
    for part, classes in parts.items():
        accs = [metrics.get(f"test/acc_class/{names[c]}") for c in classes]
        out[f"{part}_classes"] = [names[c] for c in classes]
        out[f"test_{part}_acc"] = sum(accs) / len(accs) if accs and None not in accs else None
    return out


def build_summary(cfg, *, backbone, pretrained: bool, module, datamodule, counts, trainer, best_path: str,
                  metrics: Dict[str, float], start: float, resumed_from, started_at, fit_s: float,
                  best_epoch=None) -> Dict[str, Any]:
    """What every run reports; the sections of its parts are added by ``collect_sections``."""
    ckpt = trainer.checkpoint_callback
    epochs_here = max(1, trainer.current_epoch - (started_at or {}).get("epoch", 0))
    return {
        "backbone": backbone.name,
        "backbone_kind": cfg.backbone.kind,
        "pretrained": pretrained,
        "weights": cfg.backbone.weights,
        "strategy": module.strategy.name,
        "dataset": cfg.data.name,
        "samples_per_class": cfg.data.samples_per_class,
        "seed": cfg.seed,
        "num_classes": datamodule.num_classes,
        "class_names": datamodule.class_names,
        "split": datamodule.split_info,
        "input_spec": {**backbone.input_spec.__dict__},
        "params": counts,
        "epochs_run": trainer.current_epoch,
        "global_step": trainer.global_step,
        "best_checkpoint": best_path,
        "best_score": float(ckpt.best_model_score) if ckpt and ckpt.best_model_score is not None else None,
        "best_epoch": best_epoch,  # 0-based, as Lightning counts
        "optimized_metric": cfg.optimized_metric,
        "val": {k: v for k, v in metrics.items() if k.startswith("val/") and "/acc_class/" not in k},
        **test_sections(metrics),
        "long_tail": long_tail(datamodule, metrics),
        "wall_time_s": round(time.time() - start, 2),
        "resumed_from": resumed_from,
        "started_at": started_at,  # epoch and global step fit started from (> 0 after a resume)
        "feature_cache": None,  # sections: the cached-features datamodule's
        "source": None,  # the source evaluation's (backbone=checkpoint)
        "strategy_info": {},
        "diagnostics": diagnostics_summary(metrics),
        "fit_time_s": round(fit_s, 2),
        "epoch_time_s": round(fit_s / epochs_here, 3),
        "checkpoint": checkpoint_size(module, best_path),
    }


def write_json(path: str, data: Dict[str, Any]) -> str:
    return atomic_write(path, json.dumps(data, indent=2, sort_keys=True))


def write_summary(path: str, summary: Dict[str, Any]) -> str:
    return write_json(path, summary)


def test_sections(metrics: Dict[str, float]) -> Dict[str, Dict[str, float]]:
    """The test metrics as summary.json holds them: the scalars (``test``), accuracy per class and per group
    by name (a name may hold a '/', as Fashion-MNIST's 'T-shirt/top' does)."""
    per_class, per_group = "test/acc_class/", "test/acc_group/"
    return {
        "test": {k: v for k, v in metrics.items()
                 if k.startswith("test/") and not k.startswith((per_class, per_group))},
        "test_per_class": {k[len(per_class):]: v for k, v in metrics.items() if k.startswith(per_class)},
        "test_per_group": {k[len(per_group):]: v for k, v in metrics.items() if k.startswith(per_group)},
    }


def diagnostics_summary(metrics: Dict[str, float]) -> Dict[str, Any]:
    """summary.json's ``diagnostics``: calibration (val and test ECE) and the final prediction spread; the
    collapse and plateau watches and the saliency maps add their own entries (their summary sections)."""
    return {
        "calibration": {"val_ece": metrics.get("val/ece"), "test_ece": metrics.get("test/ece")},
        "predictions": {k: metrics.get(k) for k in ("val/pred_tv", "val/top_class_share", "test/pred_tv",
                                                     "test/top_class_share")},
    }
