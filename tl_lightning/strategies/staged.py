"""Strategies that unfreeze the backbone in phases (progressive, lp_ft).

The optimizer is built once with a group for every unit (a set of backbone parameters that
unfreeze together) and one for the head; a frozen unit has ``requires_grad=False``, so it gets no
gradient and the optimizer skips it. Unfreezing flips ``requires_grad``; the unit's learning rate
(its phase's lr, or the discriminative lr ``lr * backbone_lr_mult * layer_decay**depth``) and an
optional linear warmup come from ``lr_factor`` on top of the run's schedule.

Phase rules: the head trains from the start; phase ``k`` unfreezes its units when it begins; a phase
ends after its ``max_epochs`` or, with ``patience``, when the monitored metric has not improved for
that many epochs (which ends the phase, never the run); the last phase runs until the run ends.

DDP: Lightning wraps the model once, and DDP only averages the gradients of parameters that required
grad at that moment. Units unfrozen later are averaged here, in ``on_before_optimizer_step``, so all
ranks keep identical weights (tests/test_strategies_e2e.py checks it after every unfreeze).
"""

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import lightning as L
import torch
from torch import nn

from tl_lightning.errors import ConfigError
from tl_lightning.optim import phase_shapes
from tl_lightning.strategies.base import Strategy, set_trainable

log = logging.getLogger(__name__)


@dataclass
class Phase:
    units: List[str]  # units this phase unfreezes when it begins
    lr: Optional[float] = None  # lr of the units it unfreezes (None: discriminative default)
    head_lr: Optional[float] = None  # lr of the head from this phase on (None: unchanged)
    max_epochs: Optional[int] = None
    patience: Optional[int] = None


@dataclass
class Unit:
    name: str
    params: List[nn.Parameter] = field(default_factory=list)
    depth: int = 0  # 0 = the top of the backbone


class StagedStrategy(Strategy):
    """Base for strategies with phases; subclasses build ``self.phases`` in ``plan``."""

    staged = True

    def __init__(self, cfg, context=None):
        super().__init__(cfg, context)
        self.units: Dict[str, Unit] = {}
        self.phases: List[Phase] = []
        self.phase = 0
        self.phase_start_epoch = 0
        self.phase_start_step = 0
        self._phase_shape = None  # phase_schedule=restart: length -> (step in phase -> factor)
        self._total_steps = self._steps_per_epoch = 0
        self.unfrozen_at: Dict[str, int] = {}  # unit -> global step it unfroze at
        self.best: Optional[float] = None
        self.bad_epochs = 0
        self._norm_unit: Dict[nn.Module, str] = {}

    # subclasses
    def plan(self, module: nn.Module) -> None:
        raise NotImplementedError

    # units from the backbone's layer groups, or from parameter-name regexes
    def units_from_layer_groups(self, module: nn.Module) -> None:
        groups = module.backbone.layer_groups
        self.units = {g.name: Unit(g.name, list(g.params), depth) for depth, g in enumerate(reversed(groups))}

    def units_from_selectors(self, module: nn.Module, selectors: List[List[str]]) -> List[List[str]]:
        """Each phase's list of layer-group names or parameter-name regexes becomes units; returns unit
        names per phase. A parameter goes to the first phase that selects it."""
        groups = {g.name: g for g in module.backbone.layer_groups}
        named = list(module.backbone.model.named_parameters())
        claimed: set = set()
        per_phase = []
        for index, phase_sel in enumerate(selectors):
            names = []
            for sel in phase_sel:
                if sel in groups:
                    params = [(n, p) for n, p in zip(groups[sel].param_names, groups[sel].params)]
                else:
                    try:
                        rx = re.compile(sel)
                    except re.error as exc:
                        raise ConfigError(f"config key 'strategy.phases[{index}].groups': '{sel}' is neither a layer "
                                          f"group ({', '.join(groups)}) nor a valid regex ({exc})") from None
                    params = [(n, p) for n, p in named if rx.search(n)]
                    if not params:
                        raise ConfigError(f"config key 'strategy.phases[{index}].groups': '{sel}' matches no layer "
                                          f"group ({', '.join(groups)}) and no parameter name")
                params = [(n, p) for n, p in params if n not in claimed]
                claimed.update(n for n, _ in params)
                if params:
                    unit = f"p{index}:{sel}"
                    self.units[unit] = Unit(unit, [p for _, p in params])
                    names.append(unit)
            per_phase.append(names)
        for depth, name in enumerate(n for names in per_phase for n in names):
            self.units[name].depth = depth
        left = len(named) - len(claimed)
        if left:
            log.warning("%d backbone parameter tensors are in no phase and stay frozen", left)
        return per_phase

    # Strategy hooks
    def setup(self, module: nn.Module) -> None:
        self.plan(module)
        set_trainable(module.backbone, False)
        set_trainable(module.head, True)
        if getattr(self.cfg, "train_bn", False):
            for m in module.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    set_trainable(m, True)
        owner = {id(p): u.name for u in self.units.values() for p in u.params}
        for m in module.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                params = list(m.parameters(recurse=False))
                self._norm_unit[m] = owner.get(id(params[0]), "") if params else ""
        self._apply(module, step=0)

    def _apply(self, module: nn.Module, step: int) -> None:
        """Unfreeze every unit of phases 1..self.phase (idempotent; also used after a resume)."""
        for phase in self.phases[: self.phase + 1]:
            for name in phase.units:
                for p in self.units[name].params:
                    p.requires_grad_(True)
                self.unfrozen_at.setdefault(name, step)
        self.freeze_norms(module)
        if module.training:
            self.on_train_mode(module)

    def on_train_mode(self, module: nn.Module) -> None:
        """BatchNorm of frozen units in eval mode; of unfrozen units in train mode when the module trains and
        ``bn=train`` (``freeze_stats`` and ``freeze`` keep every running statistic as it was)."""
        for m, unit in self._norm_unit.items():
            m.train(module.training and unit in self.unfrozen_at and self.cfg.bn == "train")

    def param_groups(self, module: nn.Module) -> List[Dict[str, Any]]:
        decay = self.cfg.layer_decay
        phase_lr = {name: ph.lr for ph in self.phases for name in ph.units if ph.lr is not None}
        groups = [self.head_group(module)]
        for unit in sorted(self.units.values(), key=lambda u: -u.depth):
            lr = phase_lr.get(unit.name, self.backbone_lr() * decay ** unit.depth)
            groups.append({"name": f"backbone.{unit.name}", "unit": unit.name, "params": unit.params, "lr": lr})
        return groups

    def configure_schedule(self, scheduler_cfg, total_steps: int, max_epochs: int) -> bool:
        """``phase_schedule=restart``: every phase gets its own warmup and cosine decay over its own steps
        (its max_epochs, or the rest of the run for the last phase and plateau-ended ones)."""
        if self.cfg.phase_schedule != "restart":
            return False

        self._total_steps, self._steps_per_epoch = total_steps, max(1, total_steps // max(1, max_epochs))
        self._phase_shape = phase_shapes(scheduler_cfg, self._steps_per_epoch)
        return True

    def phase_steps(self) -> int:
        """Length of the current phase in optimizer steps, as far as it is known when the phase starts."""
        remaining = max(1, self._total_steps - self.phase_start_step)
        ph, last = self.phases[self.phase], self.phase + 1 >= len(self.phases)
        return remaining if last or ph.max_epochs is None else min(remaining, ph.max_epochs * self._steps_per_epoch)

    def lr_factor(self, group: Dict[str, Any], step: int) -> float:
        shape = 1.0
        if self._phase_shape is not None:
            shape = self._phase_shape(self.phase_steps())(step - self.phase_start_step)
        unit = group.get("unit")
        if unit is None:  # the head: a later phase may change its lr
            lr = self.cfg.lr
            for ph in self.phases[: self.phase + 1]:
                lr = ph.head_lr if ph.head_lr is not None else lr
            return shape * lr / self.cfg.lr
        start = self.unfrozen_at.get(unit)
        if start is None:  # frozen: only BatchNorm affine parameters have gradients, and only with train_bn
            return shape if getattr(self.cfg, "train_bn", False) else 0.0
        warmup = self.cfg.warmup_steps
        return shape * (min(1.0, (step - start + 1) / warmup) if warmup > 0 else 1.0)

    def callbacks(self) -> list:
        return [PhaseCallback(self)]

    def state_dict(self) -> Dict[str, Any]:
        return {"phase": self.phase, "phase_start_epoch": self.phase_start_epoch, "phase_start_step": self.phase_start_step,
                "unfrozen_at": dict(self.unfrozen_at), "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.phase = state["phase"]
        self.phase_start_epoch = state["phase_start_epoch"]
        self.phase_start_step = state.get("phase_start_step", 0)  # absent in checkpoints of earlier versions
        self.unfrozen_at = dict(state["unfrozen_at"])
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]

    def restore(self, module: nn.Module) -> None:
        set_trainable(module.backbone, False)
        if getattr(self.cfg, "train_bn", False):
            for m in self._norm_unit:
                set_trainable(m, True)
        self._apply(module, step=0)

    def trainable_units(self) -> List[str]:
        return [u for u in self.units if u in self.unfrozen_at]

    def summary_info(self) -> Dict[str, Any]:
        return {"phase": self.phase, "trainable_units": self.trainable_units()}

    # phase transitions (called by PhaseCallback)
    def phase_done(self, epoch: int) -> bool:
        if self.phase + 1 >= len(self.phases):
            return False
        ph = self.phases[self.phase]
        if ph.max_epochs is not None and epoch - self.phase_start_epoch >= ph.max_epochs:
            return True
        return ph.patience is not None and self.bad_epochs >= ph.patience

    def observe(self, value: Optional[float], mode: str, min_delta: float) -> None:
        if value is None:
            return
        better = self.best is None or (value > self.best + min_delta if mode == "max" else value < self.best - min_delta)
        if better:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1

    def advance(self, module: nn.Module, epoch: int, step: int) -> None:
        self.phase += 1
        self.phase_start_epoch, self.phase_start_step = epoch, step
        self.best, self.bad_epochs = None, 0
        self._apply(module, step)


def refresh_lrs(trainer) -> None:
    """The scheduler set this step's lrs before the phase changed; recompute them with the new factors."""
    for config in trainer.lr_scheduler_configs:
        sched = config.scheduler
        if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
            for group, base, fn in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
                group["lr"] = base * fn(sched.last_epoch)


class PhaseCallback(L.Callback):
    """Moves a StagedStrategy through its phases, logs the phase and keeps DDP ranks in sync."""

    def __init__(self, strategy: StagedStrategy):
        self.strategy = strategy
        self._ddp_params: Optional[set] = None

    def on_fit_start(self, trainer, pl_module) -> None:
        # the parameters DDP registered when it wrapped the model (those requiring grad then)
        self._ddp_params = {id(p) for p in pl_module.parameters() if p.requires_grad}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        s = self.strategy
        while s.phase_done(trainer.current_epoch):
            s.advance(pl_module, trainer.current_epoch, trainer.global_step)
            if trainer.early_stopping_callback is not None:
                trainer.early_stopping_callback.wait_count = 0  # a new phase is not a plateau of the run
            log.info("epoch %d: phase %d, trainable units: %s", trainer.current_epoch, s.phase,
                     ", ".join(s.trainable_units()) or "head only")
            refresh_lrs(trainer)
        pl_module.log("train/phase", float(s.phase), on_step=False, on_epoch=True)
        pl_module.log("train/trainable_params", float(sum(p.numel() for p in pl_module.parameters() if p.requires_grad)),
                      on_step=False, on_epoch=True)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        cfg = self.strategy.cfg
        value = trainer.callback_metrics.get(cfg.monitor)
        self.strategy.observe(None if value is None else float(value), cfg.mode, cfg.min_delta)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.world_size <= 1 or not torch.distributed.is_initialized():
            return
        late = [p for p in pl_module.parameters()
                if p.requires_grad and p.grad is not None and id(p) not in (self._ddp_params or set())]
        if not late:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in late])
        torch.distributed.all_reduce(flat)
        flat /= trainer.world_size
        offset = 0
        for p in late:
            n = p.grad.numel()
            p.grad.copy_(flat[offset: offset + n].view_as(p.grad))
            offset += n
