"""Cached against uncached linear probe, 10 epochs each, in one invocation.

Both runs are the same job through the harness (`tl_lightning.run.train`): the default workload
(EfficientNet-Lite0 with its embedded weights, Fashion-MNIST, 20 labels per class, 96 px) with
strategy=linear_probe, data.augment=none and early stopping off. Uncached, the frozen backbone runs
on every batch of every epoch; cached, it runs once per image and the head trains on the stored
features. Three runs: uncached, cached with an empty cache (cold: extraction included) and cached
again (warm: the features come from disk, as in a sweep over lr or seeds). Prints wall times, the
speed ratios and the test accuracies. Target: >= 10x faster, accuracy within 0.5 points.

    python scripts/bench_linear_probe.py
    python scripts/bench_linear_probe.py --epochs 20 data.samples_per_class=100
"""

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

OVERRIDES = [
    "backbone=efficientnet_lite0", "data=fashion_mnist", "strategy=linear_probe", "data.augment=none",
    "logger=none", "callbacks.rich_progress_bar.enabled=false", "callbacks.early_stopping.enabled=false",
    "callbacks.confusion_matrix.enabled=false",
    # the workload docs/speed.md quotes (the default job's data settings when it was measured)
    "data.image_size=96", "data.eval_per_class=30", "strategy.lr=1e-3", "trainer.channels_last=false",
]


def timed_run(overrides, out: str):
    from tl_lightning.compose import compose_config
    from tl_lightning.run import train

    cfg = compose_config(overrides, out)
    start = time.perf_counter()
    _, summary = train(cfg, out)
    return time.perf_counter() - start, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for all runs")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    base = OVERRIDES + [f"trainer.max_epochs={args.epochs}"] + args.overrides
    with tempfile.TemporaryDirectory() as tmp:
        cache = [f"paths.cache_dir={tmp}/cache"]
        runs = {}
        for name, extra in (("uncached", ["strategy.cache_features=false"]), ("cached, cold", []),
                            ("cached, warm", [])):
            out = Path(tmp) / name.replace(", ", "_")
            out.mkdir()
            seconds, summary = timed_run(base + cache + extra, str(out))
            runs[name] = (seconds, summary["test"]["test/acc"], summary["feature_cache"])
            print(f"{name:13s} {seconds:7.2f} s  test/acc {summary['test']['test/acc']:.4f}  "
                  f"feature cache: {summary['feature_cache']}", flush=True)
    t_plain, acc_plain, _ = runs["uncached"]
    print(f"workload: {' '.join(base)}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in ("cached, cold", "cached, warm"):
        seconds, acc, _ = runs[name]
        print(f"speed-up {name}: {t_plain / seconds:.1f}x   accuracy difference: {100 * (acc - acc_plain):+.2f} points")


if __name__ == "__main__":
    main()
