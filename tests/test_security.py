"""Hostile model folders (issue: reliability and security, second round): a folder that asks transformers to run
its own code, and weights that are a pickle payload, are refused in one line; the payload never runs, with or
without a terminal attached."""

import json
import os
import pickle
import pty
import select
import shutil
import subprocess
import sys
import time

import pytest
from helpers import ROOT, TEST_ENV
from omegaconf import OmegaConf

from tl_lightning.errors import WeightsError


class Payload:
    """Unpickling this writes the marker file: the proof that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def minilm_copy(tmp_path):
    from tl_lightning.backbones.text_backbones import minilm_folder

    folder = tmp_path / "model"
    shutil.copytree(minilm_folder(), folder)
    return folder


def with_own_code(tmp_path, marker, where="config.json"):
    """The MiniLM folder plus a Python file that writes ``marker`` on import, named by auto_map in ``where``."""
    folder = minilm_copy(tmp_path)
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                    "from transformers import BertConfig as EvilConfig, BertModel as EvilModel\n"
                                    "from transformers import BertTokenizerFast as EvilTokenizer\n")
    content = json.loads((folder / where).read_text())
    content["auto_map"] = ({"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"} if where == "config.json"
                           else {"AutoTokenizer": ["evil.EvilTokenizer", None]})
    (folder / where).write_text(json.dumps(content))
    return folder


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_a_model_folder_with_its_own_code_is_refused_before_transformers_reads_it(tmp_path, where):
    from tl_lightning.backbones.registry import build_backbone

    marker = tmp_path / "ran"
    folder = with_own_code(tmp_path, marker, where)
    with pytest.raises(WeightsError) as info:
        build_backbone(OmegaConf.create({"kind": "hf", "name": str(folder)}), pretrained=True)
    message = str(info.value)
    assert "\n" not in message and f"{folder / where} names code of its own (auto_map: " in message, message
    assert "never runs code from a model folder" in message
    assert not marker.exists()


def test_transformers_is_told_never_to_run_remote_code(tmp_path, monkeypatch):
    """Past the harness's own check (a folder it could not inspect, a Hub id), transformers refuses on its own: a
    model type only the folder's code implements is one line (it would prompt, or run the code, otherwise)."""
    from tl_lightning.backbones import text_backbones

    marker = tmp_path / "ran"
    folder = with_own_code(tmp_path, marker)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "evil-bert"}))
    monkeypatch.setattr(text_backbones, "refuse_remote_code", lambda folder, label: None)
    with pytest.raises(WeightsError, match="cannot load"):
        text_backbones._build(OmegaConf.create({"kind": "hf", "name": str(folder)}), str(folder), "x", True, True)
    assert not marker.exists()


def test_weights_that_are_a_pickle_payload_are_one_line_and_never_run(tmp_path):
    from tl_lightning.backbones.registry import build_backbone

    marker = tmp_path / "ran"
    folder = minilm_copy(tmp_path)
    (folder / "model.safetensors").unlink()
    with open(folder / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"embeddings.word_embeddings.weight": Payload(marker)}, fh)
    with pytest.raises(WeightsError) as info:
        build_backbone(OmegaConf.create({"kind": "hf", "name": str(folder)}), pretrained=True)
    assert "\n" not in str(info.value) and "not plain tensors" in str(info.value), info.value
    assert not marker.exists()


def test_with_a_terminal_attached_there_is_no_prompt_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "ran"
    folder = with_own_code(tmp_path, marker)
    primary, secondary = pty.openpty()
    env = {**os.environ, **TEST_ENV}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={tmp_path / 'run'}",
                             "data=synthetic_text", "backbone=hf", f"backbone.name={folder}", "logger=none"],
                            cwd=ROOT, env=env, stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True)
    os.close(secondary)
    chunks, deadline = [], time.time() + 300
    while time.time() < deadline:
        if select.select([primary], [], [], 1.0)[0]:
            try:
                data = os.read(primary, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
            if b"[y/N]" in data:  # a prompt: answer yes, as a user might, to show that it would run
                os.write(primary, b"y\n")
        elif proc.poll() is not None:
            break
    os.close(primary)
    output = b"".join(chunks).decode(errors="replace")
    assert proc.wait(timeout=60) == 2, output
    assert "[y/N]" not in output and "Traceback" not in output, output
    last = [line for line in output.splitlines() if line.strip()][-1]
    assert last.startswith(f"error: {folder / 'config.json'} names code of its own"), output
    assert not marker.exists()


# ---------------------------------------------------------------- a pickle payload in every file the harness loads

def payload_file(path, marker, content=None):
    """A torch zip archive (what the harness's loaders expect) whose unpickling would write ``marker``."""
    import torch

    torch.save(content if content is not None else {"tl_lightning": {}, "state_dict": {}, "x": Payload(marker)}, path)
    return str(path)


def _tiny_image_parts():
    from tl_lightning.backbones.registry import build_backbone
    from tl_lightning.config.schema import SyntheticDataConf
    from tl_lightning.data import build_datamodule

    backbone = build_backbone(OmegaConf.create({"kind": "torchvision", "name": "resnet18", "weights": None}),
                              pretrained=False, image_size=32)
    data = OmegaConf.merge(OmegaConf.structured(SyntheticDataConf), {"name": "synthetic", "per_class": 12,
                                                                     "image_size": 32, "augment": "none",
                                                                     "val_fraction": 0.25, "test_fraction": 0.25})
    dm = build_datamodule(data, backbone.preprocessing)
    dm.setup("fit")
    return backbone, dm


def load_checkpoint_payload(tmp_path, marker):
    from tl_lightning.inference import load

    load(payload_file(tmp_path / "best.ckpt", marker))


def load_source_checkpoint_payload(tmp_path, marker):
    from tl_lightning.backbones.registry import build_backbone

    path = payload_file(tmp_path / "source.ckpt", marker)
    build_backbone(OmegaConf.create({"kind": "checkpoint", "name": "checkpoint", "path": path}), pretrained=True)


def load_resume_payload(tmp_path, marker):
    from tl_lightning.resume import resolve_resume

    (tmp_path / "checkpoints").mkdir()
    payload_file(tmp_path / "checkpoints" / "last.ckpt", marker)
    resolve_resume("auto", str(tmp_path))


def load_weights_payload(tmp_path, marker):
    from tl_lightning.backbones.weights import load_state_dict_file

    load_state_dict_file(payload_file(tmp_path / "weights.pth", marker, {"conv.weight": Payload(marker)}))


def load_torch_hub_payload(tmp_path, marker):
    from tl_lightning.backbones.registry import build_backbone

    os.environ["TORCH_HOME"] = str(tmp_path)  # restored by the test
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    payload_file(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth", marker, {"conv1.weight": Payload(marker)})
    build_backbone(OmegaConf.create({"kind": "torchvision", "name": "resnet18", "weights": None}), pretrained=True)


def load_feature_cache_payload(tmp_path, marker):
    from tl_lightning.features import load_or_build

    backbone, dm = _tiny_image_parts()
    load_or_build(backbone, dm, str(tmp_path), batch_size=8)
    (cached,) = (tmp_path / "features").glob("*.pt")
    payload_file(cached, marker, {"key": Payload(marker)})
    assert load_or_build(backbone, dm, str(tmp_path), batch_size=8)[1].startswith("unreadable")


def load_token_cache_payload(tmp_path, marker):
    from tl_lightning.backbones.registry import build_backbone
    from tl_lightning.config.schema import SyntheticTextDataConf
    from tl_lightning.context import DataPaths
    from tl_lightning.data import build_datamodule

    minilm = build_backbone(OmegaConf.create({"kind": "minilm", "name": "all-MiniLM-L6-v2", "max_length": 16}),
                            pretrained=True)
    cfg = OmegaConf.merge(OmegaConf.structured(SyntheticTextDataConf), {"name": "synthetic_text", "per_class": 12,
                                                                          "val_fraction": 0.25, "test_fraction": 0.25})
    build_datamodule(cfg, minilm.preprocessing, DataPaths(cache_dir=str(tmp_path))).setup("fit")
    (cached,) = (tmp_path / "tokens").glob("*.pt")
    payload_file(cached, marker, {"key": Payload(marker)})
    minilm.preprocessing.memo.clear()
    dm = build_datamodule(cfg, minilm.preprocessing, DataPaths(cache_dir=str(tmp_path)))
    dm.setup("fit")
    assert dm.split_info["token_cache"] == "miss"  # rebuilt, never used


def load_model_folder_payload(tmp_path, marker):
    """A model folder (tl-export format=hf) whose weights file is a pickle payload, next to a pytorch_model.bin that
    is one too: only model.safetensors is read, and it is refused."""
    import json

    from tl_lightning.inference import load

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"tl_lightning": {"architecture": {"kind": "torchvision",
                                                                                      "name": "resnet18"}}}))
    payload_file(folder / "model.safetensors", marker)
    payload_file(folder / "pytorch_model.bin", marker)
    load(str(folder))


@pytest.mark.parametrize("loader,refused", [
    (load_checkpoint_payload, True), (load_source_checkpoint_payload, True), (load_resume_payload, True),
    (load_weights_payload, True), (load_torch_hub_payload, True), (load_feature_cache_payload, False),
    (load_token_cache_payload, False), (load_model_folder_payload, True)],
    ids=["ckpt_path", "backbone.path", "resume", "backbone.weights", "torch_hub_cache", "feature_cache", "token_cache",
         "model_folder"])
def test_a_pickle_payload_in_any_file_the_harness_loads_never_runs(tmp_path, monkeypatch, loader, refused):
    """Checkpoints and weights are refused in one line; caches are rebuilt; the payload never runs."""
    monkeypatch.setenv("TORCH_HOME", os.environ.get("TORCH_HOME", str(tmp_path / "torch")))
    marker = tmp_path / "ran"
    if refused:
        with pytest.raises(WeightsError) as info:
            loader(tmp_path, marker)
        assert "\n" not in str(info.value), info.value
    else:
        loader(tmp_path, marker)
    assert not marker.exists()


def test_a_checkpoint_whose_recorded_architecture_names_a_folder_with_code_is_refused(tmp_path):
    """A clean-tensor checkpoint may record any architecture: a text one pointing at a folder with its own code is
    refused in one line by eval, predict, export and backbone=checkpoint alike (they all rebuild through it)."""
    import torch

    from tl_lightning.inference import load

    marker = tmp_path / "ran"
    folder = with_own_code(tmp_path, marker)
    ckpt = {"tl_lightning": {"architecture": {"kind": "hf", "name": str(folder)}, "class_names": ["a", "b"]},
            "state_dict": {"head.weight": torch.zeros(2, 384), "head.bias": torch.zeros(2)}}
    torch.save(ckpt, tmp_path / "clean.ckpt")
    with pytest.raises(WeightsError) as info:
        load(str(tmp_path / "clean.ckpt"))
    assert "\n" not in str(info.value) and "names code of its own" in str(info.value), info.value
    assert not marker.exists()


# ---------------------------------------------------------------- no tool overwrites its inputs or a run's files

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny finished image run, and a test image of its data as a PNG (an input for predict)."""
    from helpers import tiny, train_inprocess
    from PIL import Image

    run_dir = tmp_path_factory.mktemp("security") / "run"
    train_inprocess(tiny(), run_dir)
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 0\n")  # what train.py's Hydra writes there
    image = run_dir.parent / "input.png"
    Image.new("RGB", (32, 32), (120, 30, 200)).save(image)
    return run_dir, run_dir / "checkpoints" / "best.ckpt", image


def digests(*paths):
    import hashlib

    return {str(p): hashlib.sha1(p.read_bytes()).hexdigest() for root in paths
            for p in ([root] if root.is_file() else sorted(root.rglob("*"))) if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("tool,output,fragment", [
    ("export", "{ckpt}", "is the checkpoint, which this command reads"),
    ("export", "{run}/summary.json", "is a file of the run in"),
    ("export", "{run}/checkpoints/last.ckpt", "is a file of the run in"),
    ("predict", "{ckpt}", "is the checkpoint, which this command reads"),
    ("predict", "{image}", "is the input, which this command reads"),
    ("predict", "{run}/.hydra/config.yaml", "is a file of the run in"),
    ("predict", "{run}", "is a folder; give a file path"),
], ids=["export_ckpt", "export_summary", "export_last", "predict_ckpt", "predict_input", "predict_hydra", "predict_dir"])
def test_a_tool_never_writes_over_its_inputs_or_a_runs_files(finished, tmp_path, tool, output, fragment):
    from test_deploy import tool_config

    from tl_lightning.errors import ConfigError

    run_dir, ckpt, image = finished
    output = output.format(ckpt=ckpt, run=run_dir, image=image)
    before = digests(run_dir, image)
    args = [f"ckpt_path={ckpt}", f"output={output}"] + ([f"input={image}"] if tool == "predict" else [])
    with pytest.raises(ConfigError) as info:
        tool_config(tool, args, tmp_path)
    assert fragment in str(info.value) and "\n" not in str(info.value), info.value
    assert digests(run_dir, image) == before


def test_predict_never_writes_over_a_file_its_glob_reads(finished, tmp_path):
    from tl_lightning.deploy.predict import predict
    from tl_lightning.errors import ConfigError
    from tl_lightning.inference import load

    _, ckpt, image = finished
    (tmp_path / "a.png").write_bytes(image.read_bytes())
    (tmp_path / "b.png").write_bytes(image.read_bytes())
    with pytest.raises(ConfigError, match="is one of the inputs this command reads"):
        predict(load(str(ckpt)), str(tmp_path / "*.png"), str(tmp_path / "b.png"), progress=False)
    assert (tmp_path / "b.png").read_bytes() == image.read_bytes()


@pytest.mark.parametrize("module,args", [
    ("tl_lightning.eval", ["ckpt_path={ckpt}", "logger=none"]),
    ("tl_lightning.diagnose", ["command=gap", "reference.kind=halves", "data=synthetic", "backbone=resnet18"]),
], ids=["eval", "diagnose"])
def test_eval_and_diagnose_never_take_over_a_training_run_dir(finished, module, args):
    run_dir, ckpt, _ = finished
    before = digests(run_dir)
    args = [a.format(ckpt=ckpt) for a in args]
    proc = subprocess.run([sys.executable, "-m", module, f"hydra.run.dir={run_dir}", *args],
                          cwd=ROOT, env={**os.environ, **TEST_ENV}, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"error: run dir {run_dir} already holds a run (") and "hydra.run.dir" in lines[0]
    assert digests(run_dir) == before


def test_a_failed_or_killed_re_export_keeps_the_verified_model_and_its_report(finished, tmp_path, monkeypatch):
    import signal

    from test_deploy import tool_config

    from tl_lightning.deploy import export as export_module
    from tl_lightning.errors import VerificationError, WriteError
    from tl_lightning.inference import load

    _, ckpt, _ = finished
    model = load(str(ckpt))
    cfg = tool_config("export", [f"ckpt_path={ckpt}", f"output={tmp_path / 'model.onnx'}", "verify_samples=8"], tmp_path)
    report = export_module.export(model, cfg)
    assert report["passed"] and report["sha256"] == hashlib_of(tmp_path / "model.onnx")
    verified = digests(tmp_path)

    real_compare = export_module.compare
    monkeypatch.setattr(export_module, "compare", lambda *a: {k: {**v, "max_abs_diff": 1.0}
                                                                for k, v in real_compare(*a).items()})
    with pytest.raises(VerificationError, match="the previous verified model there, if any, is unchanged"):
        export_module.export(model, cfg)
    after = digests(tmp_path)
    assert {k: after[k] for k in verified} == verified  # model.onnx and export.json as they were
    assert json.loads((tmp_path / "export.unverified.json").read_text())["passed"] is False
    assert (tmp_path / "model.onnx.unverified").is_file()

    # SIGKILL half-way through a re-export (during the check): the verified model and its report stay
    script = ("import os, signal, sys\nsys.path.insert(0, 'tests')\nfrom test_deploy import tool_config\n"
              "from tl_lightning.deploy import export as e\nfrom tl_lightning.inference import load\n"
              "e.compare = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
              f"cfg = tool_config('export', ['ckpt_path={ckpt}', 'output={tmp_path / 'model.onnx'}', "
              f"'verify_samples=8'], {str(tmp_path)!r})\ne.export(load({str(ckpt)!r}), cfg)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, **TEST_ENV},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert list(tmp_path.glob(".model.onnx.tmp-*")), "the killed export left its temporary (not the model)"
    after = digests(tmp_path)
    assert {k: after[k] for k in verified} == verified
    monkeypatch.setattr(export_module, "compare", real_compare)
    assert export_module.export(model, cfg)["passed"]
    assert not list(tmp_path.glob(".*.tmp-*")), "the next export removes a dead process's temporaries"
    assert not (tmp_path / "model.onnx.unverified").exists() and not (tmp_path / "export.unverified.json").exists()

    (tmp_path / "not_a_folder").write_text("")
    cfg = tool_config("export", [f"ckpt_path={ckpt}", f"output={tmp_path / 'not_a_folder' / 'm.onnx'}"], tmp_path)
    with pytest.raises(WriteError) as info:
        export_module.export(model, cfg)
    assert str(info.value).startswith(f"cannot write {tmp_path / 'not_a_folder'}") and "try format" not in str(info.value)


def hashlib_of(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("entry", ["eval", "predict", "export", "backbone.path", "backbone.weights", "resume"])
def test_every_entry_point_refuses_a_pickle_payload_in_one_line_and_never_runs_it(tmp_path, entry):
    """The commands themselves (a process each: the one-line contract and exit 2), fed a checkpoint or weights file
    whose unpickling would write the marker."""
    from PIL import Image

    from tests.helpers import TINY

    marker = tmp_path / "ran"
    where = {"backbone.weights": tmp_path / "weights.pth", "resume": tmp_path / "out" / "checkpoints" / "last.ckpt"}
    where.get(entry, tmp_path).parent.mkdir(parents=True, exist_ok=True)
    payload = payload_file(where.get(entry, tmp_path / "best.ckpt"), marker,
                           {"conv1.weight": Payload(marker)} if entry == "backbone.weights" else None)
    (tmp_path / "in").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "in" / "a.png")
    out = f"hydra.run.dir={tmp_path / 'out'}"
    train = [sys.executable, str(ROOT / "train.py"), out, *TINY]
    command = {
        "eval": [sys.executable, "-m", "tl_lightning.eval", f"ckpt_path={payload}", out],
        "predict": [sys.executable, "-m", "tl_lightning.predict", f"ckpt_path={payload}", f"input={tmp_path / 'in'}",
                    f"output={tmp_path / 'preds.csv'}"],
        "export": [sys.executable, "-m", "tl_lightning.export", f"ckpt_path={payload}", out],
        "backbone.path": [*train, "backbone=checkpoint", f"backbone.path={payload}"],
        "backbone.weights": [*train, f"backbone.weights={payload}"],
        "resume": [*train, "resume=auto", "resume_strict=false"],  # the run dir's own last.ckpt (no config saved)
    }[entry]
    proc = subprocess.run(command, cwd=ROOT, env={**os.environ, **TEST_ENV}, capture_output=True, text=True,
                          timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    # refused for the payload, nothing else (resume=auto tries last.ckpt and best.ckpt, and says neither can be read)
    reason = "can be read" if entry == "resume" else "holds Python objects besides tensors"
    assert reason in errors[0] and "weights_only` set to `False`" not in errors[0], errors[0]
    assert "Traceback" not in proc.stderr and not marker.exists()
    assert not (tmp_path / "preds.csv").exists()
