"""A sweep of small jobs one after the other (Hydra's basic launcher) against side by side on this machine
(``hydra/launcher=parallel``: hydra-joblib-launcher, n_jobs jobs, cores / n_jobs torch threads each), in one
invocation: the wall time of each sweep, the ratio, and each job's test accuracy in both.

    python scripts/bench_sweep.py                              # the default job, seed=0..5
    python scripts/bench_sweep.py --jobs 4 --n-jobs 2 trainer.max_epochs=2
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(folder: str, seeds: str, extra, launcher) -> float:
    env = {**os.environ, "TL_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "train.py", "-m", f"hydra.sweep.dir={folder}", f"seed={seeds}", "logger=csv", *launcher, *extra]
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return took


def accuracies(folder: str, jobs: int):
    out = []
    for k in range(jobs):
        with open(os.path.join(folder, str(k), "summary.json")) as fh:
            out.append(json.load(fh)["test"]["test/acc"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="overrides of every job")
    args = parser.parse_args()
    seeds = ",".join(str(s) for s in range(args.jobs))
    with tempfile.TemporaryDirectory() as tmp:
        one = sweep(os.path.join(tmp, "sequential"), seeds, args.overrides, [])
        two = sweep(os.path.join(tmp, "parallel"), seeds, args.overrides,
                    ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={args.n_jobs}"])
        acc_one, acc_two = accuracies(os.path.join(tmp, "sequential"), args.jobs), \
            accuracies(os.path.join(tmp, "parallel"), args.jobs)
    print(f"{args.jobs} jobs ({' '.join(args.overrides) or 'the default job'}), {os.cpu_count()} cores")
    print(f"  one after the other (basic launcher)          {one:7.1f} s")
    print(f"  side by side (hydra/launcher=parallel, {args.n_jobs} jobs) {two:7.1f} s   {two / one:.2f}x")
    print("  test accuracy per seed, one after the other: " + " ".join(f"{a:.4f}" for a in acc_one))
    print("  test accuracy per seed, side by side:        " + " ".join(f"{a:.4f}" for a in acc_two))


if __name__ == "__main__":
    main()
