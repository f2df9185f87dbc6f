"""Start-up: the seconds from the command to the first training step, and to tl-predict's first prediction.

Each command runs in a fresh process, ``--repeats`` times; the medians are printed. The default job (``python
train.py``) is timed by a callback added through ``callbacks.extra``. It notes when the callbacks were built
(backbone, data, module and loggers are ready by then), when fit starts, when training starts (after the
validation sanity check), and when the first training step starts and ends. It then ends the process, so only the
start-up is paid for. Without W&B (``logger=csv``) the same, to show what W&B's offline start costs. Then a config
error (one line, before torch), ``import tl_lightning.run`` alone, ``tl-predict`` on one image and ``tl-eval`` on
a one-epoch checkpoint of the default job.

    python scripts/bench_startup.py                          # 3 repeats
    python scripts/bench_startup.py --baseline 363c70f       # and the same in a worktree of that revision
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402

ENV = {**os.environ, "TL_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


class FirstStep(L.Callback):
    """Writes {phase: time.time()} to ``path`` and ends the process after the first training step."""

    def __init__(self, path: str):
        self.path, self.times = path, {"callbacks_built": time.time()}

    def on_fit_start(self, trainer, pl_module):
        self.times["fit_start"] = time.time()

    def on_train_start(self, trainer, pl_module):
        self.times["train_start"] = time.time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.times.setdefault("first_step_start", time.time())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times["first_step_end"] = time.time()
        with open(self.path, "w") as fh:
            json.dump(self.times, fh)
        os._exit(0)  # start-up measured; the rest of the run is not


def timed(cmd, cwd=ROOT, expect: int = 0) -> float:
    start = time.time()
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    took = time.time() - start
    if proc.returncode != expect:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-2000:]}")
    return took


def first_step(tmp: str, extra, cwd) -> dict:
    marks = os.path.join(tmp, "marks.json")
    if os.path.exists(marks):
        os.remove(marks)
    start = time.time()
    timed([sys.executable, "train.py", f"hydra.run.dir={tmp}/run-{time.time_ns()}",
           f"+callbacks.extra.first_step={{_target_: scripts.bench_startup.FirstStep, path: {marks}}}", *extra], cwd)
    with open(marks) as fh:
        return {k: v - start for k, v in json.load(fh).items()}


def measure(cwd, repeats: int, tmp: str, ckpt: str, image: str) -> dict:
    """{label: median seconds} for the code in ``cwd`` (this checkout, or a worktree of the baseline)."""
    med = statistics.median
    rows = {}
    for label, extra in (("default job (W&B offline)", []), ("default job, logger=csv", ["logger=csv"])):
        runs = [first_step(tmp, extra, cwd) for _ in range(repeats)]
        for phase in ("callbacks_built", "train_start", "first_step_end"):
            rows[f"{label}: {phase.replace('_', ' ')}"] = med(r[phase] for r in runs)
    rows["config error (strategy=finetun)"] = med(
        timed([sys.executable, "train.py", "strategy=finetun"], cwd, expect=2) for _ in range(repeats))
    rows["python -c 'import tl_lightning.run'"] = med(
        timed([sys.executable, "-c", "import tl_lightning.run"], cwd) for _ in range(repeats))
    rows["tl-predict, one image (whole command)"] = med(
        timed([sys.executable, "-m", "tl_lightning.predict", f"ckpt_path={ckpt}", f"input={image}",
               f"output={tmp}/preds.csv", "progress_bar=false"], cwd) for _ in range(repeats))
    rows["tl-eval, the run's test split (whole command)"] = med(
        timed([sys.executable, "-m", "tl_lightning.eval", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp}/eval-{time.time_ns()}",
               "logger=none", "progress_bar=false"], cwd) for _ in range(repeats))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", help="a git revision measured the same way in a temporary worktree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = os.path.join(tmp, "ckpt_run")  # a one-epoch default job: the checkpoint predict and eval read
        timed([sys.executable, "train.py", f"hydra.run.dir={run_dir}", "trainer.max_epochs=1", "logger=csv"])
        ckpt = os.path.join(run_dir, "checkpoints", "best.ckpt")
        timed([sys.executable, "scripts/save_test_images.py", ckpt, os.path.join(tmp, "imgs"), "--count", "1"])
        image = next(str(p) for p in Path(tmp, "imgs").rglob("*.png"))
        columns = {}
        if args.baseline:
            tree = os.path.join(tmp, "baseline")
            subprocess.run(["git", "worktree", "add", "--detach", "-q", tree, args.baseline], cwd=ROOT, check=True)
            try:
                # the baseline has no bench_startup of its own: the callback is this file's
                os.makedirs(os.path.join(tree, "scripts"), exist_ok=True)
                shutil.copy(__file__, os.path.join(tree, "scripts", "bench_startup.py"))
                columns[args.baseline[:10]] = measure(tree, args.repeats, tmp, ckpt, image)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, check=False)
        columns["now"] = measure(ROOT, args.repeats, tmp, ckpt, image)
    names = list(columns)
    print(f"seconds from the command (median of {args.repeats}, fresh processes, {os.cpu_count()} cores)")
    print(f"  {'':<52} " + " ".join(f"{n:>10}" for n in names) + ("   now/baseline" if len(names) > 1 else ""))
    for label in columns["now"]:
        values = [columns[n][label] for n in names]
        ratio = f"   {values[-1] / values[0]:.2f}x" if len(values) > 1 else ""
        print(f"  {label:<52} " + " ".join(f"{v:>10.2f}" for v in values) + ratio)


if __name__ == "__main__":
    main()
