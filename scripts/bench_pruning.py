"""Optuna pruning: the compute a 16-trial search of the default job spends, with and without pruning.

Runs ``python train.py hparams_search=optuna`` twice in one invocation, with the same sampler seed and search space
(the learning rates, weight decay and head dropout of conf/hparams_search/optuna.yaml):
``callbacks.optuna_pruning.pruner=none`` (every trial to its end: early stopping only) and ``=median`` (a trial
below the median of the earlier trials at the same epoch is stopped, after 4 complete trials and 2 epochs). For each
it prints the best validation value found, the trial and cumulative epochs and seconds at which it was first
reached, and the totals. The pruned search's saving is its compute to reach the best value the unpruned one found
(or, if it never reaches it, its whole compute against the unpruned one's and the gap).

    python scripts/bench_pruning.py                      # 16 trials each, the default job
    python scripts/bench_pruning.py --trials 6 -- trainer.max_epochs=4
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


def search(pruner: str, trials: int, sweep_dir: str, extra) -> dict:
    cmd = [sys.executable, str(ROOT / "train.py"), "hparams_search=optuna", f"hydra.sweep.dir={sweep_dir}",
           f"hydra.sweeper.n_trials={trials}", f"callbacks.optuna_pruning.pruner={pruner}", "logger=csv",
           "callbacks.rich_progress_bar.enabled=false", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TL_OFFLINE": "1"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"search with pruner={pruner} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    import optuna

    from tl_lightning.callbacks.optuna_storage import open_storage

    storage = open_storage(os.path.join(sweep_dir, "optuna.journal"))
    study = optuna.load_study(study_name=optuna.study.get_all_study_names(storage)[0], storage=storage)
    rows = []
    for trial in sorted(study.trials, key=lambda t: t.number):
        summary_path = Path(sweep_dir) / str(trial.number) / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        rows.append({"number": trial.number, "state": trial.state.name, "epochs": summary.get("epochs_run", 0),
                     "seconds": summary.get("wall_time_s", 0.0), "best": summary.get("best_score")})
    return {"rows": rows, "wall": wall}


def reached(rows, target: float):
    """(trial, cumulative epochs, cumulative seconds) when a trial's validation first reached ``target``."""
    epochs = seconds = 0.0
    for row in rows:
        epochs += row["epochs"]
        seconds += row["seconds"]
        if row["best"] is not None and row["best"] >= target - 1e-9:
            return row["number"], epochs, seconds
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("extra", nargs="*", help="train.py overrides for both searches (after --)")
    args = parser.parse_args()
    out = {}
    with tempfile.TemporaryDirectory(prefix="tl_bench_pruning_") as tmp:
        for pruner in ("none", "median"):
            out[pruner] = search(pruner, args.trials, os.path.join(tmp, pruner), args.extra)
    print(f"{args.trials} trials of the default job{' ' + ' '.join(args.extra) if args.extra else ''}, "
          "hparams_search=optuna (TPE, seed 0)")
    print(f"{'pruner':<8} {'complete':>8} {'pruned':>6} {'epochs':>7} {'job s':>7} {'sweep s':>8} {'best val':>9}  "
          "first reached")
    best_unpruned = max(r["best"] for r in out["none"]["rows"] if r["best"] is not None)
    for pruner, res in out.items():
        rows = res["rows"]
        best = max(r["best"] for r in rows if r["best"] is not None)
        hit = reached(rows, best)
        states = [r["state"] for r in rows]
        print(f"{pruner:<8} {states.count('COMPLETE'):>8} {states.count('PRUNED'):>6} "
              f"{sum(r['epochs'] for r in rows):>7.0f} {sum(r['seconds'] for r in rows):>7.0f} {res['wall']:>8.0f} "
              f"{best:>9.4f}  trial {hit[0]}, after {hit[1]:.0f} epochs / {hit[2]:.0f} s")
    none_rows, median_rows = out["none"]["rows"], out["median"]["rows"]
    target = reached(median_rows, best_unpruned)
    total_none = sum(r["seconds"] for r in none_rows)
    base = reached(none_rows, best_unpruned)
    if target is not None:
        print(f"to reach the unpruned search's best ({best_unpruned:.4f}): {base[2]:.0f} s without pruning, "
              f"{target[2]:.0f} s with it ({target[2] / base[2]:.2f}x)")
    else:
        best_median = max(r["best"] for r in median_rows if r["best"] is not None)
        total_median = sum(r["seconds"] for r in median_rows)
        print(f"the pruned search never reached {best_unpruned:.4f} (its best {best_median:.4f}, "
              f"{best_median - best_unpruned:+.4f}); whole search {total_median:.0f} s against {total_none:.0f} s "
              f"({total_median / total_none:.2f}x)")
    print(f"whole search: {sum(r['epochs'] for r in median_rows):.0f} epochs with pruning against "
          f"{sum(r['epochs'] for r in none_rows):.0f} without "
          f"({sum(r['epochs'] for r in median_rows) / sum(r['epochs'] for r in none_rows):.2f}x)")


if __name__ == "__main__":
    main()
