"""Parameter-efficient adapters (LoRA and IA3 through Hugging Face peft) on a backbone, and the base-weights
digest that lets an adapter-only checkpoint name the weights it was trained on.

Adapters are injected in place (``peft.LoraModel`` / ``peft.IA3Model`` on ``backbone.model``): parameter names
of the base weights gain ``base_layer.`` where a layer was adapted, and ``merge`` folds the adapters back so
the backbone has its original architecture and names again (what eval, predict, export and
``backbone=checkpoint`` use).
"""

import re
from dataclasses import dataclass
from typing import Dict, List, Optional

from torch import nn

from tl_lightning.errors import ConfigError

ADAPTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.MultiheadAttention)
ADAPTER_MARKS = ("lora_", "ia3_")  # in the names of adapter parameters (LoRA's A and B, IA3's scaling vectors)


@dataclass
class AdapterSpec:
    targets: List[str]  # module names inside backbone.model
    r: int = 0  # LoRA only
    alpha: float = 0.0  # LoRA only
    dropout: float = 0.0  # LoRA only
    base_digest: str = ""
    method: str = "lora"  # lora | ia3

    def record(self) -> dict:
        return {"method": self.method, "targets": list(self.targets), "r": self.r, "alpha": self.alpha,
                "dropout": self.dropout, "base_digest": self.base_digest}

    @classmethod
    def from_record(cls, record: dict) -> "AdapterSpec":
        return cls(list(record["targets"]), int(record.get("r", 0)), float(record.get("alpha", 0.0)),
                   float(record.get("dropout", 0.0)), record.get("base_digest", ""), record.get("method", "lora"))


def _adaptable(model: nn.Module) -> Dict[str, nn.Module]:
    """Layers peft can adapt, outermost only (a MultiheadAttention's own out_proj is part of it)."""
    out: Dict[str, nn.Module] = {}
    for name, m in model.named_modules():
        if name and isinstance(m, ADAPTABLE) and not any(name.startswith(o + ".") for o in out):
            out[name] = m
    return out


def default_targets(model: nn.Module, layers: Optional[Dict[str, nn.Module]] = None) -> List[str]:
    """Attention projections of a transformer (a name part holding 'attn' or 'attention': timm ViT's attn.qkv and
    attn.proj, BERT's query/key/value/output.dense, DistilBERT's q_lin..., torchvision's MultiheadAttention);
    otherwise the 1x1 and 3x3 convolutions that are not grouped (depthwise convolutions are left out)."""
    layers = _adaptable(model) if layers is None else layers
    attention = [n for n, m in layers.items() if isinstance(m, (nn.Linear, nn.MultiheadAttention))
                 and any("attn" in part or "attention" in part for part in n.split("."))]
    if attention:
        return attention
    return [n for n, m in layers.items() if isinstance(m, nn.Conv2d) and m.groups == 1
            and tuple(m.kernel_size) in ((1, 1), (3, 3))]


def resolve_targets(model: nn.Module, patterns: Optional[List[str]], model_name: str) -> List[str]:
    """The module names the adapters go on: ``patterns`` (regexes searched in module names) or the family default."""
    layers = _adaptable(model)
    if not patterns:
        targets = default_targets(model, layers)
        if not targets:
            raise ConfigError(f"adapters: {model_name} has no attention projection and no 1x1/3x3 convolution to "
                              f"adapt; name layers with strategy.target_modules ({_examples(layers)})")
        return targets
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p))
        except re.error as exc:
            raise ConfigError(f"config key 'strategy.target_modules': '{p}' is not a valid regex ({exc})") from None
    targets = [n for n in layers if any(rx.search(n) for rx in compiled)]
    if not targets:
        raise ConfigError(f"config key 'strategy.target_modules': {list(patterns)} matches no layer of {model_name} that "
                          f"an adapter can go on; it has {_examples(layers)}")
    return targets


def _examples(layers: Dict[str, nn.Module], shown: int = 8) -> str:
    names = list(layers)
    picked = names if len(names) <= shown else names[: shown // 2] + ["..."] + names[-shown // 2:]
    kinds = sorted({type(m).__name__ for m in layers.values()})
    return f"{len(names)} {'/'.join(kinds)} layers: {', '.join(picked)}"


def add_adapters(model: nn.Module, spec: AdapterSpec):
    """Inject the adapters into ``model`` in place; returns the peft tuner that can merge them back."""
    from peft import IA3Config, IA3Model, LoraConfig, LoraModel

    try:
        if spec.method == "ia3":  # learned scaling of each target layer's output
            return IA3Model(model, IA3Config(target_modules=list(spec.targets), feedforward_modules=[]), "default")
        config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=list(spec.targets))
        return LoraModel(model, config, "default")
    except (ValueError, TypeError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:240] or type(exc).__name__  # peft's message spans lines (module reprs)
        raise ConfigError(f"strategy={spec.method}: peft cannot adapt the chosen layers: {reason}") from None


def is_adapter(name: str) -> bool:
    return any(mark in name for mark in ADAPTER_MARKS)


def adapter_parameters(module: nn.Module) -> List[nn.Parameter]:
    return [p for n, p in module.named_parameters() if is_adapter(n)]


def merge(tuner) -> nn.Module:
    """Fold the adapters into the base weights; the model gets back its plain layers and parameter names."""
    return tuner.merge_and_unload()
