"""``diagnose rank`` and ``diagnose gap`` (conf/diagnose.yaml): features of a backbone on a datamodule (cached as
train.py caches them), then transferability scores (tl_lightning/diagnose/transferability.py) or the domain gap
(tl_lightning/diagnose/gap.py). Each writes diagnose.json and diagnose.md in its run dir and prints a table."""

import json
import logging
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from tl_lightning.atomic import atomic_write
from tl_lightning.backbones.registry import build_backbone
from tl_lightning.config import load_option
from tl_lightning.config.schema import GAP_MIN_SAMPLES, BackboneConf
from tl_lightning.config.validate import merge_into_schema, validate_data, validate_recorded_data
from tl_lightning.context import DataPaths
from tl_lightning.data import build_datamodule
from tl_lightning.diagnose.gap import domain_gap
from tl_lightning.diagnose.transferability import all_scores
from tl_lightning.errors import ConfigError, DataError
from tl_lightning.features import load_or_build
from tl_lightning.inference import from_checkpoint, read_checkpoint

log = logging.getLogger("tl_lightning")
KIND_PREFIXES = ("timm", "torchvision", "hf")
MIN_SAMPLES = GAP_MIN_SAMPLES


def parse_candidate(spec: str) -> Tuple[str, DictConfig, bool]:
    """(label, backbone config, pretrained) of a ``backbones`` entry: an option, kind:name, random:<either>, or a
    harness checkpoint."""
    pretrained = True
    rest = spec
    if rest.startswith("random:"):
        pretrained, rest = False, rest[len("random:"):]
    if rest.endswith(".ckpt") or os.path.sep in rest:
        node = {"kind": "checkpoint", "name": "checkpoint", "path": rest}
        if not pretrained:
            raise ConfigError(f"backbones: '{spec}': a checkpoint's weights are the point; random:<option> gives a "
                              "random-weights control of its architecture")
    elif ":" in rest:
        kind, name = rest.split(":", 1)
        if kind not in KIND_PREFIXES:
            raise ConfigError(f"backbones: '{spec}': unknown kind '{kind}'; valid: {', '.join(KIND_PREFIXES)}, "
                              "random:<...>, a backbone option, or a .ckpt file")
        node = {"kind": kind, "name": name}
    else:
        node = load_option("backbone", rest)
    cfg = merge_into_schema(lambda: OmegaConf.structured(BackboneConf), OmegaConf.create(node), "backbone.")
    cfg.pretrained = pretrained
    return spec, cfg, pretrained


def candidates(cfg: DictConfig, choice: str) -> List[Tuple[str, DictConfig, bool]]:
    """(label, backbone config, pretrained) of each candidate: the ``backbones`` entries, or the backbone group's
    own config; plus a random-weights control of the first one when none has random weights."""
    if cfg.backbones:
        out = [parse_candidate(s) for s in cfg.backbones]
    else:
        own = cfg.backbone
        label = own.path if own.kind == "checkpoint" else (
            choice if choice and choice not in KIND_PREFIXES else f"{own.kind}:{own.name}")
        out = [(label, own, bool(own.pretrained))]
    if all(pretrained for _, _, pretrained in out):
        label, first, _ = out[0]
        control = OmegaConf.create(OmegaConf.to_container(first))
        control.pretrained = False
        out.append((f"random:{label}", control, False))  # a checkpoint's: its architecture with reset weights
    return out


def features(backbone_cfg: DictConfig, pretrained: bool, data_cfg: DictConfig, cfg: DictConfig,
             backbone=None) -> Tuple[Dict[str, torch.Tensor], Any, Any]:
    """(feature tensors of every split, the backbone, the datamodule); ``backbone``: reuse one already built."""

    if backbone is None:
        if backbone_cfg.kind == "checkpoint" and not pretrained:  # the control of a checkpoint: its architecture

            ckpt = read_checkpoint(backbone_cfg.path, key="backbones")
            backbone = from_checkpoint(ckpt, backbone_cfg.path, data_cfg.get("image_size"), key="backbones").backbone
            _reset_weights(backbone)
        else:
            backbone = build_backbone(backbone_cfg, pretrained=pretrained, image_size=data_cfg.get("image_size"))
    backbone.eval()
    datamodule = build_datamodule(data_cfg, backbone.preprocessing, DataPaths.of(cfg.paths))
    datamodule.setup("fit")
    tensors, _ = load_or_build(backbone, datamodule, cfg.paths.cache_dir, cfg.batch_size)
    return tensors, backbone, datamodule


def _reset_weights(module: torch.nn.Module) -> None:
    torch.manual_seed(0)
    for layer in module.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()


def rank(cfg: DictConfig, output_dir: str, choice: str) -> Dict[str, Any]:

    data_cfg = validate_data(cfg.data)
    rows = []
    for label, backbone_cfg, pretrained in candidates(cfg, choice):
        start = time.time()
        tensors, backbone, datamodule = features(backbone_cfg, pretrained, data_cfg, cfg)
        x, y = tensors[f"{cfg.split}_x"].double(), tensors[f"{cfg.split}_target"].numpy()
        source_probs = None
        if pretrained and backbone.source_task is not None:  # a harness checkpoint: its own source classifier
            with torch.no_grad():
                head = backbone.source_task.head.double().eval()
                source_probs = head(x).softmax(dim=-1).numpy()
        scores = all_scores(x.numpy(), y, source_probs)
        rows.append({"backbone": label, "kind": backbone_cfg.kind, "name": backbone_cfg.name,
                     "path": backbone_cfg.path, "pretrained": pretrained, **scores, "feature_dim": int(x.shape[1]),
                     "samples": int(len(y)), "seconds": round(time.time() - start, 1)})
        log.info("%s: LogME %.4f (%d samples, %d features, %.0f s)", label, scores["logme"], len(y), x.shape[1],
                 time.time() - start)
    rows.sort(key=lambda r: -r["logme"])
    result = {"command": "rank", "dataset": data_cfg.name, "split": cfg.split,
              "samples_per_class": data_cfg.samples_per_class, "seed": cfg.seed, "ranking": rows}
    write(output_dir, result, rank_markdown(result))
    return result


def rank_markdown(result: Dict[str, Any]) -> str:
    has_source = any("leep" in r for r in result["ranking"])
    head = "| rank | backbone | LogME |" + (" LEEP | NCE |" if has_source else "") + " samples | features | time |"
    lines = [f"Transferability on {result['dataset']} ({result['split']} split, {result['samples_per_class']} per "
             "class), highest LogME first", "", head, "|" + "---|" * (head.count("|") - 1)]
    for k, r in enumerate(result["ranking"], start=1):
        source = (f" {r['leep']:.3f} | {r['nce']:.3f} |" if "leep" in r else " - | - |") if has_source else ""
        lines.append(f"| {k} | {r['backbone']} | {r['logme']:.4f} |{source} {r['samples']} | {r['feature_dim']} | "
                     f"{r['seconds']:.0f} s |")
    return "\n".join(lines) + "\n"


def _subset(x: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if len(x) <= limit:
        return x
    return x[np.sort(np.random.default_rng(seed).permutation(len(x))[:limit])]


def gap(cfg: DictConfig, output_dir: str, choice: str) -> Dict[str, Any]:

    data_cfg = validate_data(cfg.data)
    tensors, backbone, _ = features(cfg.backbone, cfg.backbone.pretrained, data_cfg, cfg)
    target = tensors[f"{cfg.split}_x"].double().numpy()
    ref = cfg.reference
    if ref.kind == "halves":
        order = np.random.default_rng(cfg.seed).permutation(len(target))
        half = len(target) // 2
        a, b = target[order[:half]], target[order[half:2 * half]]
        names = (f"{data_cfg.name} {cfg.split} (half 1)", f"{data_cfg.name} {cfg.split} (half 2)")
    else:
        if ref.kind == "source":
            source = backbone.source_task
            if source is None or not source.data_config:
                raise ConfigError("reference.kind=source needs backbone=checkpoint backbone.path=<a harness checkpoint "
                                  "that records its data config>" + (f"; {cfg.backbone.path} records none"
                                                                      if cfg.backbone.kind == "checkpoint" else ""))
            ref_cfg = validate_recorded_data(source.data_config, cfg.backbone.path)
            label = f"source {ref_cfg.name}"
        else:
            if isinstance(ref.data, str):
                node = load_option("data", ref.data)
            else:  # an option with overrides (the tool's config check saw it has a name): site B's folder
                node = OmegaConf.merge(load_option("data", ref.data.name), ref.data)
            node.seed = cfg.seed
            ref_cfg = validate_data(node)
            label = ref_cfg.name
        ref_tensors, _, _ = features(cfg.backbone, cfg.backbone.pretrained, ref_cfg, cfg, backbone=backbone)
        a, b = target, ref_tensors[f"{ref.split}_x"].double().numpy()
        names = (f"{data_cfg.name} {cfg.split}", f"{label} {ref.split}")
    for side, x in zip(names, (a, b)):
        if len(x) < MIN_SAMPLES:
            raise DataError(f"gap needs at least {MIN_SAMPLES} samples a side; {side} has {len(x)} (a larger "
                            "data.samples_per_class, or split=test)")
    a, b = _subset(a, cfg.max_samples, cfg.seed), _subset(b, cfg.max_samples, cfg.seed + 1)
    start = time.time()
    result = {"command": "gap", "backbone": choice or cfg.backbone.name, "target": names[0], "reference": names[1],
              **domain_gap(a, b, cfg.permutations, cfg.seed), "seconds": None}
    result["seconds"] = round(time.time() - start, 1)
    write(output_dir, result, gap_markdown(result))
    return result


def gap_markdown(r: Dict[str, Any]) -> str:
    return (f"Domain gap in {r['backbone']}'s feature space: {r['target']} vs {r['reference']}\n\n"
            "| samples | MMD^2 | p (permutations) | Frechet (PCs) | domain classifier acc | proxy A-distance | verdict |\n"
            "|---|---|---|---|---|---|---|\n"
            f"| {r['samples'][0]} / {r['samples'][1]} | {r['mmd2']:.4f} | {r['p_value']:.3f} ({r['permutations']}) | "
            f"{r['frechet']:.1f} ({r['components']}) | {r['domain_accuracy']:.3f} | {r['proxy_a_distance']:.2f} | "
            f"**{r['verdict']}** |\n")


def write(output_dir: str, result: Dict[str, Any], markdown: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    atomic_write(os.path.join(output_dir, "diagnose.json"), json.dumps(result, indent=2) + "\n")
    atomic_write(os.path.join(output_dir, "diagnose.md"), markdown)
    print(markdown)
    print(f"wrote {os.path.join(output_dir, 'diagnose.json')} and diagnose.md")


def run(cfg: DictConfig, output_dir: str, choice: Optional[str] = None) -> Dict[str, Any]:
    return (rank if cfg.command == "rank" else gap)(cfg, output_dir, choice or "")
