"""Fault injection (`pytest -m faults`): every mistake is one line and damages nothing; crashes, full disks,
corrupt checkpoints, signals and concurrent runs lose no work. The README's "Errors and recovery" lists
these promises; each has a test here (the CLI contract in subprocesses, the rest in-process)."""

import hashlib
import json
import logging
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, TEST_ENV, run_train, train_inprocess, write_image_tree
from tests.test_cli import assert_user_error

pytestmark = pytest.mark.faults

# a small real model (timm, random init) so that runs and their checkpoints are quick to make and copy
SMALL = ["backbone=timm", "backbone.name=mobilenetv3_small_050", "backbone.pretrained=false", "data=synthetic",
         "data.image_size=32", "data.batch_size=8", "data.per_class=12", "logger=csv",
         "callbacks.rich_progress_bar.enabled=false", "callbacks.confusion_matrix.enabled=false", "trainer.max_epochs=2"]


def snapshot(folder) -> dict:
    """Every file of a run dir and its digest; not .lock, which names the process that last held the dir."""
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    proc = run_train(SMALL, run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


@pytest.mark.parametrize("args,fragments", [
    (["strategy.lr=-1"], ["strategy.lr", "positive"]),
    ([], ["already holds a run", "resume=auto"]),
    (["strategy.lr=0.1"], ["already holds a run"]),
    (["resume=auto", "strategy.lr=0.1"], ["config differs", "strategy.lr: 0.003 -> 0.1", "resume_strict=false"]),
    (["resume=auto", "data.samples_per_clas=3"], ["did you mean data.samples_per_class?"]),
    (["resume=auto", "strategy.lam=3"], ["strategy.lam", "belongs to strategy=ewc"]),
], ids=["bad_value", "no_resume", "new_config_no_resume", "resume_changed_config", "typo", "other_strategys_key"])
def test_a_mistake_aimed_at_a_finished_run_leaves_it_byte_identical(run_copy, args, fragments):
    before = snapshot(run_copy)
    assert_user_error(run_train(SMALL + args, run_copy), *fragments)
    assert snapshot(run_copy) == before


def test_resume_auto_skips_a_corrupt_newest_checkpoint_and_refuses_when_none_loads(run_copy, caplog):
    from tl_lightning.errors import WeightsError
    from tl_lightning.resume import resolve_resume

    last = run_copy / "checkpoints" / "last.ckpt"
    older = run_copy / "hpc_ckpt_1.ckpt"  # Lightning's own SLURM requeue checkpoint, older than last.ckpt
    shutil.copy(last, older)
    os.utime(older, (time.time() - 60, time.time() - 60))
    with open(last, "r+b") as fh:
        fh.truncate(last.stat().st_size // 2)
    with caplog.at_level(logging.WARNING):
        assert resolve_resume("auto", str(run_copy)) == str(older)
    assert "skipping" in caplog.text and "last.ckpt" in caplog.text
    older.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="no checkpoint in .* can be read"):
        resolve_resume("auto", str(run_copy))


def test_a_corrupt_last_ckpt_with_resume_auto_is_one_line_and_damages_nothing(run_copy):
    last = run_copy / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    before = snapshot(run_copy)
    assert_user_error(run_train(SMALL + ["resume=auto"], run_copy), "resume=auto", "can be read")
    assert snapshot(run_copy) == before


def test_a_checkpoint_holding_code_is_refused_without_advice_to_run_it(tmp_path):
    import torch

    from tl_lightning.errors import WeightsError
    from tl_lightning.inference import read_checkpoint

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "tl_lightning": {}, "payload": logging.Formatter()}, path)
    with pytest.raises(WeightsError) as info:
        read_checkpoint(str(path), "resume")
    assert "not a readable checkpoint" in str(info.value) and "weights_only=False" not in str(info.value)


# Errors known at start-up: one line, exit 2, and torch never imported (so well under 2 s). A wrapper runs
# train.py's main() and reports at exit whether torch was imported; it also hides any GPU of the machine.
WRAPPER = ("import atexit, sys; atexit.register(lambda: print('TORCH_IMPORTED=%s' % ('torch' in sys.modules), "
           "file=sys.stderr)); import tl_lightning.config.schema as v; v.gpu_visible = lambda: False; "
           "from tl_lightning.cli.train import main; sys.argv = ['train.py'] + sys.argv[1:]; main()")


@pytest.mark.parametrize("case", ["weights_dir", "resume_dir", "resume_truncated", "root_missing", "root_is_file",
                                  "checkpoint_corrupt", "gpu_trainer", "run_dir_uncreatable", "devices", "cache_dir_file"])
def test_start_up_errors_are_one_line_before_torch_is_imported(tmp_path, case):
    truncated = tmp_path / "last.ckpt"
    truncated.write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "file.txt").write_text("x")
    args, fragments = {
        "weights_dir": (["backbone=resnet18", f"backbone.weights={tmp_path}"], ["backbone.weights", "is a directory"]),
        "resume_dir": ([f"resume={tmp_path}"], ["is a directory", "resume=auto hydra.run.dir="]),
        "resume_truncated": ([f"resume={truncated}"], ["resume:", "not a readable checkpoint"]),
        "root_missing": (["data=image_folder", f"data.root={tmp_path}/nope"], ["data.root", "no such directory"]),
        "root_is_file": (["data=fashion_mnist", f"data.root={tmp_path}/file.txt"], ["data.root", "is a file"]),
        "checkpoint_corrupt": (["backbone=checkpoint", f"backbone.path={truncated}"], ["backbone.path", "not a readable"]),
        "gpu_trainer": (["trainer=gpu"], ["no GPU", "trainer=cpu"]),
        "run_dir_uncreatable": ([f"hydra.run.dir={tmp_path}/file.txt/run"], ["cannot create run dir"]),
        "devices": (["trainer.devices=abc"], ["trainer.devices", "'abc' is not valid"]),
        "cache_dir_file": ([f"paths.cache_dir={tmp_path}/file.txt/cache"], ["paths.cache_dir=", "is a file, not a folder"]),
    }[case]
    env = {**os.environ, **TEST_ENV}
    run_dir = [] if case == "run_dir_uncreatable" else [f"hydra.run.dir={tmp_path}/run"]
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *run_dir, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert "TORCH_IMPORTED=False" in proc.stderr, proc.stderr[-2000:]
    proc.stderr = proc.stderr.replace("TORCH_IMPORTED=False", "")
    assert_user_error(proc, *fragments)
    assert not (tmp_path / "run").exists() or case == "run_dir_uncreatable"


def _start(args, run_dir):
    cmd = [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **TEST_ENV}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(path, proc, timeout=240):
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < end, f"{path} did not appear"
        time.sleep(0.2)


def _resume_command(stderr: str, run_dir) -> list:
    """The overrides of the command a stopped run printed, less the run dir (run_train / _start add it)."""
    line = next(ln for ln in stderr.splitlines() if ln.startswith("stopped: "))
    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command[:2] == ["python", "train.py"] and command[-2:] == [f"hydra.run.dir={run_dir}", "resume=auto"], command
    return command[2:-2] + ["resume=auto"]


def test_concurrent_runs_signals_and_resume_lose_no_work(tmp_path):
    """A run is stopped by Ctrl-C, continued with the command it printed, stopped by SIGTERM, continued again;
    meanwhile a second run into the same dir is refused by the lock. The final run ends as an uninterrupted one
    (every training step done once) and resumed from the checkpoint the signal saved. Signals go to the whole
    process group, DataLoader worker included, as a terminal's Ctrl-C, `timeout` or Slurm send them."""
    import torch

    run_dir = tmp_path / "run"
    # 0.4 s per batch: a resumed run cannot finish before the test signals it, however fast the machine is
    args = [*SMALL, "trainer.max_epochs=6", "data.num_workers=1",
            "+callbacks.extra.slow={_target_: tests.ddp_probe.SlowBatches, seconds: 0.4}"]
    last = run_dir / "checkpoints" / "last.ckpt"
    first = _start(args, run_dir)
    _wait_for(last, first)
    second = run_train(args + ["resume=auto"], run_dir)  # the same run again, while the first one holds the dir
    assert_user_error(second, "is in use by process", f"process {first.pid} ")
    os.killpg(first.pid, signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "stopped: SIGINT at epoch" in err and f"saved {last}" in err
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert step > 0

    again = _start(_resume_command(err, run_dir), run_dir)
    deadline = time.time() + 240
    while torch.load(last, map_location="cpu", weights_only=True)["global_step"] <= step:  # a checkpoint of its own
        assert again.poll() is None and time.time() < deadline, again.stderr.read()[-3000:]
        time.sleep(0.3)
    os.killpg(again.pid, signal.SIGTERM)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 143, err[-3000:]
    assert "stopped: SIGTERM at epoch" in err and "resume=auto" in err
    saved_step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]

    train_inprocess(_resume_command(err, run_dir), run_dir)  # the command it printed, in this process
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["started_at"]["global_step"] == saved_step > step
    batches = math.ceil(summary["split"]["sizes"]["train"] / 8)
    assert summary["global_step"] == 6 * batches  # none lost or repeated
    assert not list((run_dir / "checkpoints").glob(".*tmp*"))


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_checkpoint(run_copy):
    from tl_lightning.resume import resolve_resume

    last = run_copy / "checkpoints" / "last.ckpt"
    good = last.read_bytes()
    code = ("import os, signal, sys, torch; from tl_lightning.trainer import AtomicCheckpointIO; "
            "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL); "  # killed after the bytes, before the rename
            "AtomicCheckpointIO().save_checkpoint({'state_dict': {'w': torch.zeros(100000)}}, sys.argv[1])")
    proc = subprocess.run([sys.executable, "-c", code, str(last)], cwd=ROOT, env={**os.environ, **TEST_ENV},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert last.read_bytes() == good
    leftovers = list(last.parent.glob(".last.ckpt.tmp-*"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 100000  # the write had happened, in a temporary
    assert resolve_resume("auto", str(run_copy)) == str(last)
    assert not list(last.parent.glob(".last.ckpt.tmp-*")), "resume=auto cleans up after the killed write"


def test_a_disk_that_fills_during_training_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """A patched writer plays a filesystem that fills up: the second epoch's last.ckpt gets ENOSPC half-way."""
    import builtins
    import errno

    import torch

    from tl_lightning import atomic
    from tl_lightning.errors import WriteError

    last_writes = []

    class FillingFile:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            last_writes.append(len(data))
            if len(last_writes) == 2:  # epoch 2's last.ckpt
                self.fh.write(bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

    def filling_open(path, mode="r", *a, **kw):
        fh = builtins.open(path, mode, *a, **kw)
        return FillingFile(fh) if "w" in mode and f".last.ckpt{atomic.TMP_MARK}" in str(path) else fh

    monkeypatch.setattr(atomic, "open", filling_open, raising=False)
    run_dir = tmp_path / "run"
    with pytest.raises(WriteError) as info:
        train_inprocess([*SMALL, "trainer.max_epochs=3"], run_dir)
    message = str(info.value)
    assert "\n" not in message and "disk full" in message and "MiB free" in message and ".ckpt" in message
    assert info.value.exit_code == 1
    ckpts = run_dir / "checkpoints"
    assert not list(ckpts.glob(".*tmp*")), "the half-written temporary is removed"
    for name in ("best.ckpt", "last.ckpt"):  # the files of epoch 1 are whole and load
        assert "state_dict" in torch.load(ckpts / name, map_location="cpu", weights_only=True)
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 0


def test_image_folder_structure_errors_name_classes(tmp_path):
    from tests.test_data import setup
    from tl_lightning.errors import DataError

    nested = write_image_tree(tmp_path / "a" / "ds", per_class=10)
    with pytest.raises(DataError, match=r"one class folder \('ds'\).*one level too high: data.root=.*/a/ds has 2"):
        setup("image_folder", root=str(tmp_path / "a"))
    small = write_image_tree(tmp_path / "b", classes=("cat", "dog", "owl"), per_class=3)
    with pytest.raises(DataError, match=r"class 'cat' has 3 sample\(s\)"):
        setup("image_folder", root=small)
    with pytest.raises(DataError, match=r"data.classes names 'cat' more than once"):
        setup("image_folder", root=nested, classes=["cat", "dog", "cat"])


def test_links_back_into_the_tree_and_exact_duplicates_are_dropped(tmp_path):
    from tests.test_data import setup

    root = write_image_tree(tmp_path / "ds", per_class=10)
    clean = setup("image_folder", root=root, samples_per_class=None).split_info
    os.symlink(os.path.join(root, "cat"), os.path.join(root, "cat_link"))  # not a third class
    os.symlink(root, os.path.join(root, "dog", "loop"))  # not walked again
    shutil.copy(os.path.join(root, "cat", "0.png"), os.path.join(root, "cat", "copy.png"))  # same bytes, same class
    shutil.copy(os.path.join(root, "cat", "1.png"), os.path.join(root, "dog", "odd.png"))  # same bytes, other class
    dm = setup("image_folder", root=root, samples_per_class=None)
    assert dm.class_names == ["cat", "dog"]
    info = dm.split_info["duplicates"]
    assert info["removed"] == 3 and info["conflicting_labels"] == 1  # copy.png; cat/1.png and dog/odd.png
    assert sum(dm.split_info["sizes"].values()) == sum(clean["sizes"].values()) - 1
    files = [dm.datasets[s].source.paths[i] for s in dm.datasets for i in dm.datasets[s].indices]
    assert len(files) == len(set(files)) and not any("loop" in f or "cat_link" in f for f in files)


def test_a_duplicate_in_the_official_test_split_leaves_train(tmp_path):
    from tests.test_data import setup

    for seed, split in enumerate(("train", "test")):
        write_image_tree(tmp_path / "ds" / split, per_class=6, seed=seed)
    shutil.copy(tmp_path / "ds" / "test" / "dog" / "2.png", tmp_path / "ds" / "train" / "dog" / "leak.png")
    dm = setup("image_folder", root=str(tmp_path / "ds"))
    assert dm.split_info["duplicates"]["removed"] == 1 and dm.split_info["sizes"]["test"] == 12
    train_files = {dm.datasets["train"].source.paths[i] for i in dm.datasets["train"].indices}
    assert not any(f.endswith("leak.png") for f in train_files)


@pytest.mark.parametrize("spec,fragment", [
    ({"strategy.lr": "interval(0.1, 0.01)"}, "interval(0.1, 0.01) is empty"),
    ({"strategy.lr": "tag(log, interval(0, 0.01))"}, "must start above 0"),
])
def test_optuna_search_space_is_checked_before_any_trial(spec, fragment):
    from omegaconf import OmegaConf

    from tl_lightning.cli.train import check_search_space
    from tl_lightning.errors import ConfigError

    cfg = OmegaConf.create({"hydra": {"sweeper": {"params": spec}, "overrides": {"task": []}}})
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        check_search_space(cfg)
    sweep = OmegaConf.create({"hydra": {"sweeper": {"params": {}}, "overrides": {"task": [f"{k}={v}" for k, v in spec.items()]}}})
    with pytest.raises(ConfigError, match="strategy.lr"):
        check_search_space(sweep)
    ok = OmegaConf.create({"hydra": {"sweeper": {"params": {"strategy.lr": "tag(log, interval(1e-5, 1e-2))"}},
                                     "overrides": {"task": ["seed=0,1"]}}})
    check_search_space(ok)


FAKE_SLURM = {
    "ok": {"scontrol": "echo 'Slurmctld(primary) at head is UP'",
           "sinfo": "echo 'batch* 8 64000 gpu:2'; echo 'big 64 512000 (null)'"},
    "down": {"scontrol": "echo 'Slurmctld(primary) at head is DOWN'; exit 1", "sinfo": "exit 1"},
}


@pytest.mark.parametrize("state,params,fragment", [
    ("none", {}, "not found: sbatch, squeue, sinfo, scontrol"),
    ("down", {}, "controller is not reachable (Slurmctld(primary) at head is DOWN)"),
    ("ok", {"partition": "gpu"}, "partition=gpu: no such Slurm partition; valid: batch, big"),
    ("ok", {"cpus_per_task": 4, "tasks_per_node": 4}, "asks for 16 CPUs"),
    ("ok", {"cpus_per_task": 2, "tasks_per_node": 1, "gpus_per_node": 4}, "at most 8 CPUs, 62 GB and 2 GPUs"),
    ("ok", {"partition": "big", "mem_gb": 600}, "600 GB"),
])
def test_slurm_prerequisites_are_one_line_before_submission(tmp_path, monkeypatch, state, params, fragment):
    from hydra_plugins.tl_lightning_launcher.slurm_launcher import check_cluster
    from tl_lightning.errors import ConfigError

    for tool in ("sbatch", "squeue", "sinfo", "scontrol") if state != "none" else ():
        script = tmp_path / tool
        script.write_text("#!/bin/sh\n" + FAKE_SLURM[state].get(tool, "exit 0") + "\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        check_cluster(params)
    assert fragment in str(info.value), str(info.value)
    if state == "ok":  # and a request that fits passes
        monkeypatch.setenv("PATH", str(tmp_path))
        check_cluster({"cpus_per_task": 2, "tasks_per_node": 2, "gpus_per_node": 2})


@pytest.mark.parametrize("args,fragment", [
    (["strategy.lrr=0.1"], "unknown config key 'strategy.lrr'; did you mean strategy.lr?"),
    (["stratgy=finetune"], "did you mean strategy?"),
    (["strategy=finetun"], "did you mean strategy=finetune?"),
    (["+strategy.lam=1"], "belongs to strategy=ewc"),
    (["trainer.max_epoch=3"], "did you mean trainer.max_epochs?"),
])
def test_misspellings_get_a_suggestion(args, fragment):
    from tl_lightning.compose import compose_config
    from tl_lightning.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        compose_config(args, "/tmp/tl-test-run")
    assert fragment in str(info.value) and "+" not in str(info.value), str(info.value)


def test_resume_from_another_runs_checkpoint_is_refused_before_anything_is_written(run_copy, tmp_path):
    """It would train nothing in the new dir and report the other run's checkpoints as its own."""
    before = snapshot(run_copy)
    last = run_copy / "checkpoints" / "last.ckpt"
    proc = run_train(SMALL + [f"resume={last}"], tmp_path / "new")
    assert_user_error(proc, f"resume={last} is a checkpoint of the run in {run_copy}",
                      f"hydra.run.dir={run_copy} resume=auto", f"backbone=checkpoint backbone.path={last}")
    assert not (tmp_path / "new").exists() and snapshot(run_copy) == before


def test_a_sweep_dir_in_use_or_holding_runs_is_refused_before_any_job(tmp_path):
    from tests.helpers import run_multirun
    from tl_lightning.rundir import lock_run_dir, release_run_dir

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    lock_run_dir(str(sweep))  # another sweep into this dir, still running
    try:
        proc = run_multirun(SMALL + ["seed=0,1"], sweep)
    finally:
        release_run_dir(str(sweep))
    assert_user_error(proc, f"run dir {sweep} is in use by process {os.getpid()}")
    assert sorted(p.name for p in sweep.iterdir()) == [".lock"]  # no job dir, no failed.json, no multirun.yaml

    (sweep / "0").mkdir()
    (sweep / "0" / "summary.json").write_text("{}")  # a finished job of an earlier sweep
    proc = run_multirun(SMALL + ["seed=0,1"], sweep)
    assert_user_error(proc, f"sweep dir {sweep} already holds the runs of a sweep (0/)", "resume=auto")
    assert (sweep / "0" / "summary.json").read_text() == "{}" and not (sweep / "1").exists()


def test_mistakes_in_a_checkpoint_and_diagnose_options_are_one_line(finished_run, tmp_path):
    import torch

    from tests.test_deploy import tool_config
    from tl_lightning.deploy.evaluate import evaluate
    from tl_lightning.errors import ConfigError

    ckpt = torch.load(finished_run / "checkpoints" / "best.ckpt", weights_only=True)
    ckpt["tl_lightning"]["config"]["data"]["colour_space"] = "lab"  # a key this version does not know
    torch.save(ckpt, tmp_path / "edited.ckpt")
    cfg = tool_config("eval", [f"ckpt_path={tmp_path / 'edited.ckpt'}", "logger=none", "progress_bar=false"], tmp_path)
    with pytest.raises(ConfigError) as info:
        evaluate(cfg, str(tmp_path / "eval"))
    assert str(info.value).startswith(f"{tmp_path / 'edited.ckpt'} records a data config this version cannot use (")
    assert "data.colour_space" in str(info.value) and "data=<option>" in str(info.value)

    with pytest.raises(ConfigError, match="max_samples=1: gap needs at least 10 samples a side"):
        tool_config("diagnose", ["command=gap", "max_samples=1", "reference.kind=halves"], tmp_path)
