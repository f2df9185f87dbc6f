"""Optimizer and learning-rate schedule from config."""

import math
from typing import Any, Callable, Dict, List, Optional

import torch


def split_weight_decay(groups: List[Dict[str, Any]], weight_decay: float) -> List[Dict[str, Any]]:
    """No weight decay on biases and normalisation weights (1-D tensors), as timm does.

    A group may set its own 'weight_decay' (e.g. 0 where a strategy's penalty replaces it). Frozen
    parameters given by a strategy stay in their group: strategies that unfreeze later (progressive,
    lp_ft) build the optimizer once with every group, and the optimizer skips parameters without grad.
    """
    out = []
    for g in groups:
        params = list(g["params"])
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        base = {k: v for k, v in g.items() if k not in ("params", "weight_decay")}
        if decay:
            out.append({**base, "params": decay, "weight_decay": g.get("weight_decay", weight_decay)})
        if no_decay:
            out.append({**base, "name": f"{g.get('name', 'group')}_no_decay", "params": no_decay, "weight_decay": 0.0})
    return out


def build_optimizer(groups: List[Dict[str, Any]], cfg) -> torch.optim.Optimizer:
    groups = split_weight_decay(groups, cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=groups[0]["lr"], betas=tuple(cfg.betas))


def cosine_with_warmup(warmup_steps: int, total_steps: int, min_ratio: float):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def phase_shapes(cfg, steps_per_epoch: int) -> Callable[[int], Callable[[int], float]]:
    """For per-phase schedules: a phase of ``length`` steps gets the run's warmup (``warmup_epochs``) and
    cosine decay to ``min_lr_ratio`` over its own steps."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    return lambda length: cosine_with_warmup(min(warmup, length), length, cfg.min_lr_ratio)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg, total_steps: int, max_epochs: int,
                    group_factor: Optional[Callable[[Dict[str, Any], int], float]] = None, own_schedule: bool = False):
    """A per-step schedule for Lightning, or None.

    ``group_factor(param_group, step)`` multiplies each group's schedule (a strategy's phases and the
    warmup of newly unfrozen groups); it needs scheduler=cosine or none. ``own_schedule``: the factor
    already holds the warmup and decay (per-phase schedules), so the run-wide one is left out.
    """
    if total_steps <= 0 or (cfg.name == "none" and group_factor is None):
        return None
    if group_factor is not None and cfg.name != "onecycle":
        base = cosine_with_warmup(_warmup_steps(cfg, total_steps, max_epochs), total_steps, cfg.min_lr_ratio) \
            if cfg.name == "cosine" and not own_schedule else (lambda step: 1.0)
        lambdas = [_group_lambda(base, group_factor, g) for g in optimizer.param_groups]
        return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas), "interval": "step"}
    if cfg.name == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps, pct_start=cfg.pct_start)
    else:
        warmup = _warmup_steps(cfg, total_steps, max_epochs)
        sched = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(warmup, total_steps, cfg.min_lr_ratio))
    return {"scheduler": sched, "interval": "step"}


def _warmup_steps(cfg, total_steps: int, max_epochs: int) -> int:
    return int(round(cfg.warmup_epochs * total_steps / max(1, max_epochs)))


def _group_lambda(base, group_factor, group):
    return lambda step: base(step) * group_factor(group, step)
