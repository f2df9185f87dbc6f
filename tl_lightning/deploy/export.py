"""Export a checkpoint's inference model to ONNX (torch.onnx, dynamic batch axis; optional dynamic int8 weights
through onnxruntime's quantiser) or TorchScript, then check the file against PyTorch on real samples.

The check runs the exported file (onnxruntime, or torch.jit.load) and the PyTorch model on the same samples of
the checkpoint's test split, at each batch size of ``verify_batch_sizes``: the largest absolute logit difference
and the share of equal top-1 predictions. An fp32 file that misses ``max_abs_diff`` or ``min_top1_agreement``
is renamed ``<file>.unverified`` and the export fails (exit 1); an int8 file is compared and its accuracy
reported, not failed (quantisation changes the logits by design). A re-export replaces the previous files only
once the new ones are verified (``export``).
"""

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from tl_lightning.atomic import TMP_MARK, atomic_write, remove_dead_temporaries
from tl_lightning.config.validate import validate_recorded_data
from tl_lightning.context import DataPaths, RunLayout
from tl_lightning.data import build_datamodule
from tl_lightning.deploy.card import model_card
from tl_lightning.errors import ConfigError, DataError, TLError, VerificationError
from tl_lightning.inference import InferenceModel

log = logging.getLogger(__name__)

SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "hf": "-hf"}


class TokensToLogits(nn.Module):
    """A text model with positional tensor inputs, as exporters want them."""

    def __init__(self, model: InferenceModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model({"input_ids": input_ids, "attention_mask": attention_mask})


def exportable(model: InferenceModel) -> Tuple[nn.Module, List[str]]:
    """The module to export and its input names."""
    if model.preprocessing.modality == "text":
        return TokensToLogits(model).eval(), ["input_ids", "attention_mask"]
    return model.eval(), ["input"]


def as_arrays(inputs, names: Sequence[str]) -> Dict[str, np.ndarray]:
    if isinstance(inputs, dict):
        return {n: inputs[n].cpu().numpy() for n in names}
    return {names[0]: inputs.cpu().numpy()}


def as_args(inputs, names: Sequence[str]) -> tuple:
    return tuple(inputs[n] for n in names) if isinstance(inputs, dict) else (inputs,)


def metadata(model: InferenceModel, ckpt_path: str) -> Dict[str, str]:
    """What a consumer needs to feed the file: classes, and the image spec or the tokenizer's settings."""
    prep = model.preprocessing
    meta = {"tl_lightning.class_names": json.dumps(model.class_names), "tl_lightning.modality": prep.modality,
            "tl_lightning.architecture": json.dumps(model.backbone.arch), "tl_lightning.checkpoint": os.path.abspath(ckpt_path)}
    if prep.modality == "image":
        spec = model.input_spec
        meta.update({"tl_lightning.mean": json.dumps(list(spec.mean)), "tl_lightning.std": json.dumps(list(spec.std)),
                     "tl_lightning.input_size": str(spec.size), "tl_lightning.channels": str(spec.channels),
                     "tl_lightning.interpolation": spec.interpolation, "tl_lightning.layout": "NCHW float32"})
    else:
        meta.update({"tl_lightning.max_length": str(prep.spec.max_length), "tl_lightning.truncation": prep.spec.truncation,
                     "tl_lightning.tokenizer": "tokenizer/ (next to this file; transformers.AutoTokenizer)"})
    return meta


def unsupported_op(exc: BaseException) -> str:
    """The operator named in an exporter's error, if any."""
    text = f"{exc} {exc.__cause__ or ''}"
    found = re.search(r"(aten|prim|torchvision|onnx)(::|\.)[A-Za-z_][\w.]*", text)
    return found.group(0) if found else ""


def export_onnx(module: nn.Module, names: List[str], example, path: str, opset: Optional[int],
                max_length: Optional[int] = None) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes: Dict[str, Any] = {}
    for name in names:  # the wrapper's forward takes these names; the image model's takes ``inputs``
        shapes[name if len(names) > 1 else "inputs"] = {0: batch}
    if len(names) > 1:
        seq = torch.export.Dim("sequence", min=2, max=max(3, max_length or 0, example[names[0]].shape[1]))
        for name in names:
            shapes[name][1] = seq
    kwargs = {"opset_version": opset} if opset else {}
    with quiet():
        torch.onnx.export(module, as_args(example, names), path, input_names=names, output_names=["logits"],
                          dynamic_shapes=shapes, dynamo=True, external_data=False, verbose=False, **kwargs)


def add_metadata(path: str, meta: Dict[str, str]) -> None:
    import onnx

    proto = onnx.load(path)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)


def quantize_dynamic_int8(fp32_path: str, int8_path: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = int8_path + ".prep"
    with quiet():  # the quantiser logs a line per tensor it leaves in float
        try:
            quant_pre_process(fp32_path, prepared)  # shape inference and graph clean-up, as onnxruntime advises
            # per-channel uint8 weights: on the default Lite0 checkpoint per-tensor int8 weights lost 4.9 points of
            # test accuracy, per-channel int8 1.9, per-channel uint8 0.3 (docs/deploy.md)
            quantize_dynamic(prepared, int8_path, per_channel=True, weight_type=QuantType.QUInt8)
        finally:
            if os.path.exists(prepared):
                os.remove(prepared)


@contextlib.contextmanager
def quiet():
    """The exporter prints its progress and the quantiser logs per tensor: keep the terminal to our lines."""
    import warnings

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def onnx_runner(path: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda inputs: session.run(None, as_arrays(inputs, names))[0]


def torchscript_runner(path: str, names: List[str]):
    loaded = torch.jit.load(path, map_location="cpu").eval()

    def run(inputs):
        with torch.inference_mode():
            return loaded(*as_args(inputs, names)).numpy()

    return run


def verification_samples(model: InferenceModel, count: int, data_dir: str, cache_dir: str) -> Tuple[list, str]:
    """(list of samples in the batch shape, where they came from): the checkpoint's test split when its recorded
    data can be read here, else random inputs of the model's input spec."""
    data = (model.config or {}).get("data")
    if data:
        try:
            data_cfg = validate_recorded_data(data, model.path)
            datamodule = build_datamodule(data_cfg, model.preprocessing, DataPaths(data_dir, cache_dir))
            datamodule.setup("fit")
            test = datamodule.datasets["test"].with_transform(model.preprocessing.transform(train=False))
            take = np.linspace(0, len(test) - 1, num=min(count, len(test))).round().astype(int)
            return [test[int(i)] for i in take], f"{len(take)} samples of the test split of data={data['name']}"
        except TLError as exc:
            log.warning("the checkpoint's data cannot be read here (%s); verifying on random inputs", exc)
    if model.preprocessing.modality == "text":
        raise DataError("export: verifying a text model needs its recorded data (to have real texts); it could not "
                        "be read here")
    spec = model.input_spec
    generator = torch.Generator().manual_seed(0)
    samples = [{"inputs": torch.randn(spec.channels, spec.size, spec.size, generator=generator), "target": -1,
                "index": i, "group": -1} for i in range(count)]
    return samples, f"{count} random inputs (the checkpoint's data could not be read here)"


def collate(model: InferenceModel, items: list):
    from torch.utils.data import default_collate

    return (model.preprocessing.collate or default_collate)(items)


def compare(model: InferenceModel, run, samples: list, batch_sizes: Sequence[int]) -> Dict[str, Dict[str, float]]:
    """Per batch size: max |logit difference|, top-1 agreement, and both models' accuracy where labels exist."""
    out: Dict[str, Dict[str, float]] = {}
    for size in batch_sizes:
        diffs, agree, correct_ref, correct_exp, labelled = [], 0, 0, 0, 0
        for start in range(0, len(samples), size):
            batch = collate(model, samples[start:start + size])
            with torch.inference_mode():
                ref = model(batch["inputs"]).numpy()
            got = np.asarray(run(batch["inputs"]))
            diffs.append(float(np.abs(got - ref).max()))
            agree += int((got.argmax(-1) == ref.argmax(-1)).sum())
            target = batch["target"].numpy()
            known = target >= 0
            labelled += int(known.sum())
            correct_ref += int((ref.argmax(-1) == target)[known].sum())
            correct_exp += int((got.argmax(-1) == target)[known].sum())
        result = {"max_abs_diff": max(diffs), "top1_agreement": agree / len(samples)}
        if labelled:
            result.update(accuracy_pytorch=correct_ref / labelled, accuracy_exported=correct_exp / labelled)
        out[str(size)] = result
    return out


def default_output(ckpt_path: str, fmt: str) -> str:

    ckpt = os.path.abspath(ckpt_path)
    return os.path.join(RunLayout.of_checkpoint(ckpt), "export", os.path.splitext(os.path.basename(ckpt))[0] + SUFFIX[fmt])


def _write_check(folder: str) -> None:
    """A folder the export cannot write into is one line before the model is exported (not an export error)."""
    from tl_lightning.atomic import write_error

    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-check{TMP_MARK}{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise write_error(os.path.join(folder, "export.json"), exc) from None


def _replace_folder(new: str, old: str) -> None:
    """Rename the folder ``new`` over ``old`` (the old one stays until the new one is complete)."""
    if os.path.isdir(old):
        aside = os.path.join(os.path.dirname(old), f".{os.path.basename(old)}{TMP_MARK}{os.getpid()}-old")
        os.replace(old, aside)
        os.replace(new, old)
        shutil.rmtree(aside)
    else:
        os.replace(new, old)


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export(model: InferenceModel, cfg) -> Dict[str, Any]:
    """Export, verify, write ``export.json`` next to the file; returns its content.

    Everything is written under temporary names in the output folder and verified there; only a verified model
    is renamed over the previous one (with its int8 copy, tokenizer and report), so a failed check or a kill
    half-way leaves the previous verified model and its ``export.json`` as they were. A model that fails the
    check is kept as ``<file>.unverified`` with its report ``export.unverified.json``."""

    fmt = cfg.format
    path = os.path.abspath(cfg.output or default_output(cfg.ckpt_path, fmt))
    if fmt == "hf":
        return export_hf(model, cfg, path)
    folder = os.path.dirname(path)
    _write_check(folder)
    for name in (os.path.basename(path), "tokenizer", os.path.basename(path)[: -len(".onnx")] + ".int8.onnx"):
        remove_dead_temporaries(folder, name)
    tmp = os.path.join(folder, f".{os.path.basename(path)}{TMP_MARK}{os.getpid()}{SUFFIX[fmt]}")
    written = [tmp]
    try:
        return _export_verified(model, cfg, fmt, path, tmp, written)
    finally:
        for leftover in written:
            if os.path.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            elif os.path.exists(leftover):
                os.remove(leftover)


def _export_verified(model: InferenceModel, cfg, fmt: str, path: str, tmp: str, written: List[str]) -> Dict[str, Any]:
    folder = os.path.dirname(path)
    module, names = exportable(model)
    samples, source = verification_samples(model, cfg.verify_samples, cfg.paths.data_dir, cfg.paths.cache_dir)
    example = collate(model, samples[: max(2, min(len(samples), 4))])["inputs"]
    start = time.time()
    try:
        if fmt == "onnx":
            export_onnx(module, names, example, tmp, cfg.opset, getattr(getattr(model.preprocessing, "spec", None),
                                                                        "max_length", None))
        else:
            traced = torch.jit.trace(module, as_args(example, names), check_trace=False)
            torch.jit.save(traced, tmp, _extra_files={"tl_lightning.json": json.dumps(metadata(model, cfg.ckpt_path))})
    except OSError as exc:  # the disk, not the model
        from tl_lightning.atomic import write_error

        raise write_error(path, exc) from None
    except Exception as exc:
        op = unsupported_op(exc)
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"format={fmt}: {model.backbone.name} cannot be exported"
                          + (f": unsupported operator {op}" if op else "") + f" ({type(exc).__name__}: {first}); "
                          + ("try format=torchscript" if fmt == "onnx" else "try format=onnx")) from None
    if fmt == "onnx":
        add_metadata(tmp, metadata(model, cfg.ckpt_path))
    export_s = time.time() - start
    tokenizer_tmp = ""
    if model.preprocessing.modality == "text":
        tokenizer_tmp = os.path.join(folder, f".tokenizer{TMP_MARK}{os.getpid()}")
        written.append(tokenizer_tmp)
        model.preprocessing.tokenizer.save_pretrained(tokenizer_tmp)
    runner = onnx_runner(tmp) if fmt == "onnx" else torchscript_runner(tmp, names)
    parity = compare(model, runner, samples, cfg.verify_batch_sizes)
    worst_diff = max(r["max_abs_diff"] for r in parity.values())
    worst_agree = min(r["top1_agreement"] for r in parity.values())
    passed = worst_diff <= cfg.max_abs_diff and worst_agree >= cfg.min_top1_agreement
    report: Dict[str, Any] = {
        "format": fmt, "path": path, "bytes": os.path.getsize(tmp), "sha256": sha256(tmp),
        "checkpoint": os.path.abspath(cfg.ckpt_path), "inputs": names, "export_s": round(export_s, 2),
        "verified_on": source, "parity": parity,
        "thresholds": {"max_abs_diff": cfg.max_abs_diff, "min_top1_agreement": cfg.min_top1_agreement},
        "passed": passed,
    }
    if not passed:
        report["path"] = path + ".unverified"
        os.replace(tmp, report["path"])
        atomic_write(os.path.join(folder, "export.unverified.json"), json.dumps(report, indent=2))
        raise VerificationError(f"{report['path']}: the exported model does not match PyTorch (max |logit diff| "
                                f"{worst_diff:.2e}, allowed {cfg.max_abs_diff:g}; top-1 agreement {worst_agree:.1%}, "
                                f"needed {cfg.min_top1_agreement:.0%}); kept with the .unverified suffix, its report in "
                                "export.unverified.json; the previous verified model there, if any, is unchanged")
    int8_tmp = ""
    if fmt == "onnx" and cfg.quantize == "dynamic":
        int8_path = path[: -len(".onnx")] + ".int8.onnx"
        int8_tmp = os.path.join(folder, f".{os.path.basename(int8_path)}{TMP_MARK}{os.getpid()}.onnx")
        written.append(int8_tmp)
        quantize_dynamic_int8(tmp, int8_tmp)
        report["int8"] = {"path": int8_path, "bytes": os.path.getsize(int8_tmp), "sha256": sha256(int8_tmp),
                          "parity": compare(model, onnx_runner(int8_tmp), samples, cfg.verify_batch_sizes)}
    # the verified files replace the previous ones, the report last: export.json never names a file it did not check
    if int8_tmp:
        os.replace(int8_tmp, report["int8"]["path"])
    if tokenizer_tmp:
        _replace_folder(tokenizer_tmp, os.path.join(folder, "tokenizer"))
    os.replace(tmp, path)
    atomic_write(card_path(path), model_card(model, cfg.ckpt_path))  # the same card as a Hub folder's README.md
    report["card"] = card_path(path)
    atomic_write(os.path.join(folder, "export.json"), json.dumps(report, indent=2))
    for stale in (path + ".unverified", os.path.join(folder, "export.unverified.json")):
        if os.path.exists(stale):
            os.remove(stale)
    return report


def card_path(model_path: str) -> str:
    """The model card next to an ONNX / TorchScript file: <file stem>.card.md."""
    return os.path.splitext(model_path)[0] + ".card.md"


def export_hf(model: InferenceModel, cfg, path: str) -> Dict[str, Any]:
    """A Hugging Face model folder (tl_lightning/deploy/hub.py) at ``path``, written under a temporary name, read back
    the way tl-eval reads it and compared with the checkpoint's model on real test samples (the logits must be
    equal), then renamed over the previous folder; with push=true, uploaded as one commit."""
    from tl_lightning.deploy import hub
    from tl_lightning.inference import from_checkpoint, read_checkpoint

    parent = os.path.dirname(path)
    _write_check(parent)
    remove_dead_temporaries(parent, os.path.basename(path))
    tmp = os.path.join(parent, f".{os.path.basename(path)}{TMP_MARK}{os.getpid()}")
    try:
        start = time.time()
        try:
            hub.write_model_folder(model, tmp, model_card(model, cfg.ckpt_path))
        except OSError as exc:
            from tl_lightning.atomic import write_error

            raise write_error(path, exc) from None
        export_s = time.time() - start
        reloaded = from_checkpoint(read_checkpoint(tmp), tmp)
        samples, source = verification_samples(model, cfg.verify_samples, cfg.paths.data_dir, cfg.paths.cache_dir)

        def run(inputs):
            with torch.inference_mode():
                return reloaded(inputs).numpy()

        parity = compare(model, run, samples, cfg.verify_batch_sizes)
        worst_diff = max(r["max_abs_diff"] for r in parity.values())
        if worst_diff > 0 or min(r["top1_agreement"] for r in parity.values()) < 1:
            raise VerificationError(f"{path}: the folder's model does not give the checkpoint's logits (max |logit "
                                    f"diff| {worst_diff:.2e}); nothing was replaced")
        weights = os.path.join(tmp, hub.WEIGHTS_FILE)
        report: Dict[str, Any] = {
            "format": "hf", "path": path, "files": sorted(os.listdir(tmp)), "bytes": os.path.getsize(weights),
            "sha256": sha256(weights), "checkpoint": os.path.abspath(cfg.ckpt_path), "export_s": round(export_s, 2),
            "verified_on": source, "parity": parity, "passed": True,
        }
        atomic_write(os.path.join(tmp, "export.json"), json.dumps(report, indent=2))
        _replace_folder(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    if cfg.push:
        report["pushed_to"] = hub.push_folder(path, cfg.repo_id, cfg.private)
        atomic_write(os.path.join(path, "export.json"), json.dumps(report, indent=2))
    return report
