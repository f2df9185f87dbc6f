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
