"""Optimizer and learning-rate schedule from config."""

import math
from typing import Any, Dict, List

import torch


def split_weight_decay(groups: List[Dict[str, Any]], weight_decay: float) -> List[Dict[str, Any]]:
    """No weight decay on biases and normalisation weights (1-D tensors), as timm does."""
    out = []
    for g in groups:
        params = [p for p in g["params"] if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        base = {k: v for k, v in g.items() if k != "params"}
        if decay:
            out.append({**base, "params": decay, "weight_decay": weight_decay})
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


def build_scheduler(optimizer: torch.optim.Optimizer, cfg, total_steps: int, max_epochs: int):
    """A per-step schedule for Lightning, or None."""
    if cfg.name == "none" or total_steps <= 0:
        return None
    if cfg.name == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps, pct_start=cfg.pct_start)
    else:
        steps_per_epoch = total_steps / max(1, max_epochs)
        warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
        sched = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(warmup, total_steps, cfg.min_lr_ratio))
    return {"scheduler": sched, "interval": "step"}
