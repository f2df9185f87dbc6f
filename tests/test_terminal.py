"""What a user's terminal shows: the default command without a terminal (CI, Slurm logs) and in one (a pty), with
Python's warnings on (the suite's other subprocesses run with PYTHONWARNINGS=ignore)."""

import os
import pty
import re
import select
import subprocess
import sys
import time

from helpers import ROOT, TEST_ENV, tiny, train_inprocess

# the default command on tiny inputs: the real Lite0 weights (finetune keeps BatchNorm in eval mode), Fashion-MNIST,
# the W&B logger and the default progress bar, as `make train` runs them; 8 per class: 5 batches, as many as
# log_every_n_steps (fewer would rightly warn that training steps are not logged)
DEFAULT_TINY = ["data.samples_per_class=8", "data.eval_per_class=4", "data.image_size=32", "trainer.max_epochs=2"]
WARNING_LINE = re.compile(r"\b[A-Z]\w*Warning\b|warnings\.warn|^\S+\.py:\d+: ")


def default_env():
    env = {**os.environ, **TEST_ENV, "WANDB_MODE": ""}
    env.pop("PYTHONWARNINGS")
    return env


def assert_quiet(output: str, run_dir) -> list:
    """No Python warning line, no traceback, none of the known third-party lines; the end-of-run table is there.
    Returns the lines that are not the progress display's."""
    lines = output.splitlines()
    assert not [line for line in lines if WARNING_LINE.search(line)], output
    assert "Traceback" not in output, output
    for noise in ("Run history", "Run summary", "wandb: ", "Tip:", "module(s) in eval mode", "FLOPs",
                  "anonymous setting", "srun", "LeafSpec", "Error 1"):
        assert noise not in output, (noise, output)
    assert "test accuracy" in output and f"run dir        {run_dir}" in output, output
    assert "modules in eval mode on purpose (strategy=finetune strategy.bn=freeze_stats: " in output, output
    return [line for line in lines if not re.match(r"(epoch \d+/\d+|test ) ", line)]


def test_default_command_without_a_terminal_is_quiet_and_ends_with_the_table(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *DEFAULT_TINY],
                          cwd=ROOT, env=default_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    rest = assert_quiet(proc.stdout, run_dir)
    # one readable line per epoch, values rounded to 4 decimals, not a live bar's last frame
    epochs = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"], proc.stdout
    assert re.search(r"train/loss \d\.\d{4}  val/loss \d\.\d{4}  val/acc \d\.\d{4}", epochs[-1]), epochs
    assert "━" not in proc.stdout
    assert re.search(r"val/acc = \d\.\d{4}; summary in", proc.stdout), proc.stdout
    assert len(rest) <= 25, "\n".join(rest)
    assert "W&B            offline; upload: wandb sync " in proc.stdout


def test_validation_by_steps_prints_one_line_per_validation(tmp_path, capsys):
    """trainer.check_val_every_n_epoch=null: a line after each validation (not one per epoch with stale values)."""
    train_inprocess(tiny() + ["trainer.max_epochs=-1", "trainer.max_steps=9", "trainer.val_check_interval=3",
                              "trainer.check_val_every_n_epoch=null", "callbacks.rich_progress_bar.enabled=true",
                              "callbacks.rich_progress_bar.interactive=false"], tmp_path)
    lines = capsys.readouterr().out.splitlines()
    steps = [line for line in lines if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == ["3/9", "6/9", "9/9"], lines
    assert all("val/acc" in line for line in steps) and not any(line.startswith("epoch ") for line in lines)


def test_default_command_in_a_terminal_draws_the_live_bar_and_nothing_else_of_the_noise(tmp_path):
    run_dir = tmp_path / "run"
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *DEFAULT_TINY],
                            cwd=ROOT, env={**default_env(), "COLUMNS": "120", "TERM": "xterm"}, stdin=secondary,
                            stdout=secondary, stderr=secondary, close_fds=True)
    os.close(secondary)
    chunks, deadline = [], time.time() + 600
    while time.time() < deadline:
        ready, _, _ = select.select([primary], [], [], 1.0)
        if ready:
            try:
                data = os.read(primary, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(primary)
    assert proc.wait(timeout=60) == 0
    output = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace")).replace("\r", "\n")
    assert_quiet(output, run_dir)
    assert "━" in output and "Epoch 1/1" in output, output  # Rich's bar (its epochs count from 0)
