"""Fixed-seed tiny runs of every strategy, text, groups, multi-source, protonet and lora; their summary.json files,
compared between two source trees (e.g. main before and after a refactor) apart from timings and paths.

    python scripts/summary_parity.py --tree /tmp/before --out /tmp/parity/before
    python scripts/summary_parity.py --tree .           --out /tmp/parity/after
    python scripts/summary_parity.py --compare /tmp/parity/before /tmp/parity/after

Each run is its own ``python train.py`` process (one torch thread), run from ``--tree``, so each tree runs its
own code; the data (synthetic images and texts, scikit-learn's digits, the offline EfficientNet-Lite0 weights)
needs no network.
"""

import argparse
import json
import os
import subprocess
import sys

TINY = ["backbone=resnet18", "backbone.pretrained=false", "data=synthetic", "data.image_size=32", "data.batch_size=8",
        "trainer.max_epochs=2", "logger=csv", "callbacks.rich_progress_bar.enabled=false", "data.per_class=12",
        "trainer.deterministic=true"]
STRATEGIES = ("scratch", "linear_probe", "finetune", "progressive", "lp_ft", "l2sp", "ewc")
SOURCES = ("++data.sources={a: {name: synthetic, num_classes: 3, per_class: 12}, "
           "b: {name: digits, classes: [0, 1], samples_per_class: 6, eval_per_class: 6}}")
RUNS = {
    **{s: TINY + [f"strategy={s}"] for s in STRATEGIES},
    "probe_cached": TINY + ["strategy=linear_probe", "data.augment=none"],
    "saliency": TINY + ["strategy=finetune", "callbacks.saliency.enabled=true", "callbacks.saliency.per_class=1"],
    "groups": TINY[:-2] + ["data.per_class=30", "data.shortcut.kind=patch", "data.shortcut.train_correlation=0.5",
                           "data.val_fraction=0.3", "loss=group_dro", "data.sampler=group_balanced", "strategy=ewc",
                           "optimized_metric=val/worst_group_acc", "callbacks.fairness.enabled=true",
                           "callbacks.fairness.action=rollback", "+loss.terms.fair={kind: equalized_odds, weight: 0.5}",
                           "trainer.deterministic=true"],
    "multi_source": [a for a in TINY if not a.startswith("data")] + ["data=multi_source", "data.image_size=32",
                                                                      "data.batch_size=8", SOURCES],
    "protonet": TINY[:-2] + ["data.per_class=40", "strategy=protonet", "data.classes=[2,3]", "data.samples_per_class=3",
                             "strategy.ways=2", "strategy.shots=2", "strategy.queries=2",
                             "strategy.episodes_per_epoch=3", "strategy.eval_episodes=20", "strategy.eval_queries=2",
                             "trainer.deterministic=true"],
    "lora": ["backbone=efficientnet_lite0", "data=fashion_mnist", "data.samples_per_class=2", "data.eval_per_class=2",
             "data.image_size=32", "data.batch_size=8", "trainer.max_epochs=2", "logger=csv",
             "callbacks.rich_progress_bar.enabled=false", "strategy=lora", "trainer.deterministic=true"],
    "text": ["data=synthetic_text", "data.per_class=24", "data.batch_size=16", "logger=csv", "trainer.max_epochs=2",
             "backbone.max_length=32", "callbacks.rich_progress_bar.enabled=false", "trainer.deterministic=true"],
}
# runs that start from another run's checkpoint (source evaluation, EWC on the source)
DEPENDENT = {"from_checkpoint": ("finetune", TINY + ["strategy=ewc", "backbone=checkpoint"])}
# what differs between any two runs of the same code: timings, dates, absolute paths
VOLATILE = {"wall_time_s", "fit_time_s", "epoch_time_s", "file_bytes"}


def run_all(tree: str, out: str, only=None) -> None:
    os.makedirs(out, exist_ok=True)
    env = {**os.environ, "TL_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.path.abspath(tree)}
    jobs = [(name, args) for name, args in RUNS.items()]
    jobs += [(name, args + [f"backbone.path={os.path.join(out, 'runs', src, 'checkpoints', 'best.ckpt')}"])
             for name, (src, args) in DEPENDENT.items()]
    for name, args in jobs:
        if only and name not in only:
            continue
        run_dir = os.path.join(out, "runs", name)
        cmd = [sys.executable, os.path.join(tree, "train.py"), f"hydra.run.dir={run_dir}",
               f"paths.cache_dir={os.path.join(out, 'cache')}", *args]
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
            continue
        with open(os.path.join(run_dir, "summary.json")) as fh:
            summary = json.load(fh)
        with open(os.path.join(out, f"{name}.json"), "w") as fh:
            json.dump(summary, fh, indent=2, sort_keys=True)
        print(f"{name}: ok, test/acc {summary.get('test', {}).get('test/acc')}")


def strip(node, root: str):
    """``node`` without the volatile keys, its paths relative to the tree's output dir ``root``."""
    if isinstance(node, dict):
        return {k: strip(v, root) for k, v in node.items() if k not in VOLATILE}
    if isinstance(node, list):
        return [strip(v, root) for v in node]
    if isinstance(node, str) and node.startswith(root):
        return "<out>" + node[len(root):]
    return node


def differences(a, b, where=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                yield f"{where}.{k}: only in {'after' if k not in a else 'before'}"
            else:
                yield from differences(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{where}[{i}]")
    elif a != b:
        yield f"{where}: {a!r} != {b!r}"


def compare(before: str, after: str) -> int:
    names = sorted(f for f in os.listdir(before) if f.endswith(".json"))
    failed = 0
    for name in names:
        path = os.path.join(after, name)
        if not os.path.exists(path):
            print(f"{name}: missing after")
            failed += 1
            continue
        with open(os.path.join(before, name)) as fa, open(path) as fb:
            diff = list(differences(strip(json.load(fa), os.path.abspath(before)),
                                    strip(json.load(fb), os.path.abspath(after))))
        print(f"{name}: {'equal' if not diff else f'{len(diff)} differences'}")
        for line in diff[:20]:
            print("   ", line)
        failed += bool(diff)
    print(f"{len(names) - failed} equal, {failed} differ")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=".")
    parser.add_argument("--out")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    ns = parser.parse_args()
    if ns.compare:
        sys.exit(compare(*ns.compare))
    run_all(os.path.abspath(ns.tree), os.path.abspath(ns.out), ns.only)
