"""The model card of an export: a README.md generated from the run (its checkpoint record, ``summary.json`` and the
command line Hydra recorded), in the sections the Hugging Face Hub shows, ending with what the run did not test.

Every figure comes from the run's own files; a section whose figures the run does not have says so instead of
being left out, so a reader sees what is unknown.
"""

import json
import math
import os
import shlex
from typing import Any, Dict, List, Optional

from tl_lightning.context import RunLayout


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            content = json.load(fh)
        return content if isinstance(content, dict) else None
    except (OSError, ValueError):
        return None


def _overrides(run_dir: str) -> Optional[List[str]]:
    """The command-line overrides of the run (Hydra's .hydra/overrides.yaml, read as plain YAML)."""
    import yaml

    try:
        with open(os.path.join(run_dir, ".hydra", "overrides.yaml"), encoding="utf-8") as fh:
            values = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(values, list):
        return None
    return [str(v) for v in values if not str(v).startswith(("hydra.run.dir=", "hydra.sweep.dir="))]


def pct(value: Any) -> str:
    return f"{100 * float(value):.2f} %" if isinstance(value, (int, float)) else "n/a"


def binomial_halfwidth(acc: float, n: int) -> float:
    """Half-width of a 95 % normal-approximation interval of an accuracy measured on n samples."""
    return 1.96 * math.sqrt(max(acc * (1 - acc), 1e-12) / n) if n else float("nan")


def run_files(ckpt_path: str) -> Dict[str, Any]:
    run_dir = RunLayout.of_checkpoint(os.path.abspath(ckpt_path))
    return {"run_dir": run_dir, "summary": _read_json(os.path.join(run_dir, "summary.json")),
            "overrides": _overrides(run_dir)}


def model_card(model, ckpt_path: str) -> str:
    """The card text for the model of ``ckpt_path`` (an InferenceModel)."""
    files = run_files(ckpt_path)
    summary: Dict[str, Any] = files["summary"] or {}
    config = model.config
    data = config.get("data") or {}
    strategy = (config.get("strategy") or {}).get("name") or model.record.get("strategy") or "unknown"
    modality = model.preprocessing.modality
    arch = model.backbone.arch
    pipeline = "text-classification" if modality == "text" else "image-classification"
    dataset = data.get("path") if data.get("name") == "hf" and data.get("path") else data.get("name", "its data")
    title = f"{strategy} {model.backbone.name} on {os.path.basename(str(dataset).rstrip('/')) or dataset}"
    out: List[str] = ["---", "library_name: tl-lightning", f"pipeline_tag: {pipeline}",
                      f"tags: [{pipeline}, transfer-learning, tl-lightning]"]
    if arch.get("kind") == "hf" and arch.get("name") and not os.path.isdir(str(arch["name"])):
        out.append(f"base_model: {arch['name']}")
    out += ["---", "", f"# {title}", "",
            f"A {len(model.class_names)}-class {modality} classifier trained with "
            "tl-lightning (a transfer-learning harness on PyTorch Lightning and Hydra). "
            "This card is generated from the run's own files: its checkpoint, `summary.json` and command line.", ""]

    out += ["## Task and classes", "", f"{pipeline}; classes (index: name): "
            + ", ".join(f"{i}: {name}" for i, name in enumerate(model.class_names)), ""]

    split = summary.get("split") or {}
    out += ["## Data", ""]
    where = data.get("path") or data.get("root")
    out.append(f"- dataset: `data={data.get('name', '?')}`" + (f" (`{where}`)" if where else ""))
    budget = data.get("samples_per_class")
    imbalance = (data.get("imbalance") or {})
    out.append("- labelled budget: " + (f"{budget} per class" if budget else "all labelled training samples")
               + (f", long-tailed (ratio {imbalance['ratio']})" if imbalance.get("ratio") else ""))
    if split.get("sizes"):
        out.append("- split sizes: " + ", ".join(f"{k} {v}" for k, v in split["sizes"].items()))
    out.append(f"- split seed {split.get('split_seed', data.get('seed', '?'))}, split fingerprint "
               f"`{split.get('fingerprint', 'not recorded')}` (the same on every run of this split)")
    out.append("")

    out += ["## Backbone", ""]
    source = "random initialisation (no pretrained weights)" if not (config.get("backbone") or {}).get("pretrained", True) \
        else (config.get("backbone") or {}).get("weights") or "the published pretrained weights of its library"
    out.append(f"- `{arch.get('kind')}` / `{arch.get('name')}` ({model.backbone.name}); weights: {source}")
    if modality == "image":
        spec = model.input_spec
        out.append(f"- input: {spec.channels} x {spec.size} x {spec.size}, {spec.interpolation} resize, mean "
                   f"{list(spec.mean)}, std {list(spec.std)}")
    else:
        out.append(f"- input: texts, tokenised to at most {model.preprocessing.spec.max_length} tokens "
                   f"({model.preprocessing.spec.truncation} truncation; the tokenizer is in this folder)")
    out.append("")

    out += ["## Training", "", f"- strategy: `{strategy}`"]
    overrides = files["overrides"]
    if overrides is not None:
        out.append("- settings that differ from the defaults: " + (", ".join(f"`{o}`" for o in overrides) or "none"))
    if summary:
        out.append(f"- {summary.get('epochs_run', '?')} epochs, best `{summary.get('optimized_metric', 'val/acc')}` "
                   f"{summary.get('best_score', float('nan')):.4f} at epoch {summary.get('best_epoch', '?')}; seed "
                   f"{summary.get('seed', '?')}")
    out.append("")

    out += results(summary)
    out += ["## Reproduce", ""]
    if overrides is not None:
        out += ["```", "python train.py " + " ".join(shlex.quote(o) for o in overrides), "```",
                "(the same split fingerprint is the check that the data and split are the same)", ""]
    else:
        out += ["The run's command line was not found (no `.hydra/overrides.yaml` next to the checkpoint's run).", ""]
    out += ["## Limitations", ""] + [f"- {line}" for line in limitations(summary, data, modality)] + [""]
    return "\n".join(out)


def results(summary: Dict[str, Any]) -> List[str]:
    test = summary.get("test") or {}
    out = ["## Results (test split)", ""]
    if not test:
        return out + ["No `summary.json` was found next to the checkpoint, so no test figures are stated here; "
                      "measure them with `tl-eval ckpt_path=<this folder>`.", ""]
    out += ["| metric | value |", "|---|---|"]
    for key, label in (("test/acc", "accuracy"), ("test/acc_balanced", "balanced accuracy"),
                       ("test/f1_macro", "macro-F1"), ("test/ece", "expected calibration error"),
                       ("test/loss", "loss")):
        if key in test:
            out.append(f"| {label} | {pct(test[key]) if key != 'test/loss' else f'{test[key]:.4f}'} |")
    out.append("")
    per_class = summary.get("test_per_class") or {}
    if per_class:
        out += ["Per-class accuracy:", "", "| class | accuracy |", "|---|---|"]
        out += [f"| {name} | {pct(acc)} |" for name, acc in per_class.items()] + [""]
    per_group = summary.get("test_per_group") or {}
    if per_group:
        out += ["Per-group accuracy:", "", "| group | accuracy |", "|---|---|"]
        out += [f"| {name} | {pct(acc if not isinstance(acc, dict) else acc.get('acc'))} |"
                for name, acc in per_group.items()] + [""]
    calibration = (summary.get("diagnostics") or {}).get("calibration") or {}
    scaling = summary.get("temperature_scaling")
    if calibration or scaling:
        line = "Calibration: " + ", ".join(f"{k.replace('_', ' ')} {pct(v)}" for k, v in calibration.items())
        if scaling:
            line += (f"; temperature scaling T={scaling['temperature']:.3f} fitted on validation and folded into the "
                     "head (the probabilities of this model are the scaled ones)")
        out += [line, ""]
    source = summary.get("source") or {}
    if "forgetting" in source:
        out += [f"Forgetting of the source task ({source.get('checkpoint')}): accuracy {pct(source['acc_before'])} -> "
                f"{pct(source['acc_after'])}.", ""]
    adaptation = summary.get("adaptation") or {}
    if adaptation:
        out += ["Unlabelled target data (domain gap and target metrics): "
                + json.dumps(adaptation, default=str)[:600], ""]
    return out


def limitations(summary: Dict[str, Any], data: Dict[str, Any], modality: str) -> List[str]:
    """What this run did not test (each line true of this run, from its own files)."""
    lines = []
    test = summary.get("test") or {}
    n = sum(((summary.get("split") or {}).get("class_counts") or {}).get("test") or [])
    if test.get("test/acc") is not None and n:
        half = binomial_halfwidth(float(test["test/acc"]), n)
        lines.append(f"The test accuracy comes from {n} samples: about +-{100 * half:.1f} points (95 %) from "
                     "sampling alone.")
    lines.append("One training run (one seed): the spread over seeds is not stated here; the harness's sweeps "
                 "(docs/results.md) give mean +- std over seeds for the same settings.")
    if not summary.get("test_per_group"):
        lines.append("No per-group (fairness) evaluation: the data had no group labels.")
    if not summary.get("adaptation"):
        lines.append("Tested only on the test split of its own data: no distribution shift (other sites, "
                     "devices, time) was measured.")
    if not summary.get("temperature_scaling"):
        lines.append("Probabilities are not temperature-scaled; see the calibration error above before reading "
                     "them as confidences.")
    if data.get("samples_per_class"):
        lines.append(f"Trained on {data['samples_per_class']} labelled samples per class: classes or styles absent "
                     "from those samples are not covered.")
    lines.append("Not audited for membership leakage (whether a training sample can be recognised) and not "
                 "trained with differential privacy.")
    if modality == "image":
        lines.append("No robustness test to corruptions (noise, blur, compression) or adversarial inputs.")
    else:
        lines.append("Texts longer than the token limit are truncated; other languages than the training texts' "
                     "were not tested.")
    return lines
