"""LoRA: low-rank adapters (peft) on the frozen backbone; the adapters and the new head train.

Checkpoints hold every weight except the frozen base backbone (adapters, head, loss state) and record the
adapter spec with a digest of the base weights; ``tl_lightning.inference`` rebuilds the base from the run's
backbone config, checks the digest, loads the adapters and merges them.
"""

import logging
from typing import Any, Dict

import lightning as L

from tl_lightning.backbones.adapters import AdapterSpec, adapter_parameters, add_adapters, is_adapter, resolve_targets
from tl_lightning.backbones.weights import weights_digest
from tl_lightning.errors import WeightsError
from tl_lightning.registry import STRATEGIES
from tl_lightning.strategies.base import Strategy, norm_layers, set_trainable
from tl_lightning.strategies.capabilities import PartialCheckpoints, checkpoint_size

log = logging.getLogger(__name__)


@STRATEGIES.register()
class LoRA(Strategy, PartialCheckpoints):
    name = "lora"

    def __init__(self, cfg, context=None):
        super().__init__(cfg, context)
        self.spec: AdapterSpec = None

    def make_spec(self, targets, digest: str) -> AdapterSpec:
        return AdapterSpec(targets, int(self.cfg.r), float(self.cfg.alpha), float(self.cfg.dropout), digest, "lora")

    def setup(self, module) -> None:
        model = module.backbone.model
        targets = resolve_targets(model, list(self.cfg.target_modules or []), module.backbone.name)
        self.spec = self.make_spec(targets, weights_digest(module.backbone))
        add_adapters(model, self.spec)
        self.restore(module)
        adapters = sum(p.numel() for p in adapter_parameters(module.backbone))
        log.info("%s on %d layers of %s: %s adapter parameters", self.name, len(targets), module.backbone.name,
                 f"{adapters:,}")

    def restore(self, module) -> None:
        set_trainable(module.backbone, False)
        for p in adapter_parameters(module.backbone):
            p.requires_grad_(True)
        set_trainable(module.head, True)

    def param_groups(self, module):
        return [{"name": "adapters", "params": adapter_parameters(module.backbone), "lr": self.backbone_lr()},
                self.head_group(module)]

    def checkpoint_keys(self, module, state: Dict[str, Any]) -> Dict[str, Any]:
        """Everything but the frozen base backbone: adapters, head, loss state; with bn=train also the backbone's
        BatchNorm statistics (they change during training)."""
        norms = set()
        if self.cfg.bn == "train":
            statistics = {id(m) for m in norm_layers(module.backbone)}
            for name, m in module.backbone.named_modules():
                if id(m) in statistics:
                    norms.update(f"backbone.{name}.{b}" for b, _ in m.named_buffers(recurse=False))
        return {k: v for k, v in state.items() if not k.startswith("backbone.") or is_adapter(k) or k in norms}

    def check_checkpoint(self, module, state: Dict[str, Any]) -> None:
        missing = [k for k in self.checkpoint_keys(module, module.state_dict()) if k not in state]
        if missing:
            raise WeightsError(f"the checkpoint lacks {len(missing)} adapter/head tensors of this run (e.g. {missing[0]}); "
                               f"it was not written by this {self.name} configuration")

    def summary_info(self) -> Dict[str, Any]:
        return {"adapted_layers": len(self.spec.targets), **({"r": self.spec.r, "alpha": self.spec.alpha}
                if self.spec.method == "lora" else {}), "base_digest": self.spec.base_digest}

    def adapter_record(self) -> Dict[str, Any]:
        return self.spec.record()

    def callbacks(self) -> list:
        return [AdapterSize()]

    def state_dict(self) -> Dict[str, Any]:
        return {"base_digest": self.spec.base_digest, "targets": list(self.spec.targets)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state.get("base_digest") and state["base_digest"] != self.spec.base_digest:
            raise WeightsError(f"the checkpoint's adapters were trained on other base weights (digest "
                               f"{state['base_digest'][:12]}, this backbone's {self.spec.base_digest[:12]})")
        if list(state.get("targets", self.spec.targets)) != list(self.spec.targets):
            raise WeightsError("the checkpoint's adapters sit on other layers than strategy.target_modules selects now")


@STRATEGIES.register()
class IA3(LoRA):
    """IA3 (Liu et al. 2022): a learned scaling vector on the output of each target layer, initialised to 1; far
    fewer parameters than LoRA. Same targets, checkpoints and loading as LoRA."""

    name = "ia3"

    def make_spec(self, targets, digest: str) -> AdapterSpec:
        return AdapterSpec(targets, base_digest=digest, method="ia3")


class AdapterSize(L.Callback):
    """Says, as fit ends, how much of the full model's weights the adapter-only checkpoint holds."""

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            size = checkpoint_size(pl_module, "")
            log.info("checkpoint holds %.2f MB of weights (adapters and head): %.1f %% of the full model's %.2f MB",
                     size["weights_bytes"] / 1e6, 100 * size["weights_share"], size["full_weights_bytes"] / 1e6)
