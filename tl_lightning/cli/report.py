"""Summarise a sweep: read every job's summary.json under a dir, write a Markdown table and a plot.

    tl-report logs/train/multiruns/2026-11-27_10-00-00          # or: python scripts/report.py ...
    python scripts/report.py <sweep dir> --metric test/f1_macro --out reports/
    python scripts/report.py logs/split_fashion/target --metric test/acc --metric source/forgetting
    python scripts/report.py logs/sweeps/fashion --metric best_score --by strategy.lr --by strategy.bn
    python scripts/report.py logs/longtail --metric test/acc --metric long_tail/test_tail_acc --by loss.name --by data.sampler

One row per (backbone, dataset, strategy, samples_per_class, and each --by config key read from the run's
config_resolved.yaml): mean and standard deviation over seeds. The plot shows the first metric against the
labelled budget, one line per strategy (baselines such as scripts/pixel_baseline.py's dashed). When the sweep
has strategy=scratch runs, each transfer row is compared with scratch on the same budget and marked as negative
transfer where it is below scratch beyond noise. Runs on the same samples (seed and split fingerprint) pair up:
every pair of rows with the same dataset, budget and --by values gets its paired difference, a 95 % bootstrap
interval over the pairs and the exact sign-flip p (tl_lightning/cli/paired.py); the "vs best" column says which
rows are within noise of the best, and "beyond noise" means the interval excludes 0 (where runs do not pair, the
negative-transfer rule falls back to the row's standard deviation over seeds).
"""

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from tl_lightning.cli.paired import beyond_noise, paired
from tl_lightning.context import RunLayout

BASELINE_BACKBONES = ("pixels", "tfidf")  # summaries of baselines outside the harness (drawn dashed)
REQUIRED_KEYS = {"backbone", "dataset", "strategy", "samples_per_class", "seed"}


def load_summaries(sweep_dir: Path, by=()):
    """Every summary.json under the dir; with ``by``, each gets a "by" dict of those keys of its run's config."""
    rows = []
    for path in sorted(sweep_dir.rglob(RunLayout.SUMMARY)):
        try:
            with open(path) as fh:
                summary = json.load(fh)
            if not isinstance(summary, dict) or not REQUIRED_KEYS <= summary.keys():
                raise ValueError(f"not a run summary (needs {', '.join(sorted(REQUIRED_KEYS))})")
        except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            print(f"warning: skipping {path}: {str(exc).splitlines()[0]}", file=sys.stderr)
            continue
        if by:
            summary["by"] = config_values(Path(RunLayout(str(path.parent)).config), by)
        rows.append(summary)
    return rows


def config_values(path: Path, keys):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path) if path.is_file() else OmegaConf.create()
    return {k: OmegaConf.select(cfg, k, default=None) for k in keys}


def metric_of(summary, metric: str):
    """'val/...' and 'test/...' from those sections; 'source/<key>' (forgetting runs) and 'long_tail/<key>' from
    those sections;
    'best_score': the best value of the run's optimized metric (what its best checkpoint was chosen by)."""
    if metric == "best_score":
        return summary.get("best_score")
    stage = metric.split("/")[0]
    if stage in ("source", "long_tail"):  # forgetting runs; long-tailed budgets (test_head_acc, test_tail_acc)
        return (summary.get(stage) or {}).get(metric.split("/", 1)[1])
    return summary.get(stage, {}).get(metric)


def _sortable(value):
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def aggregate(summaries, metrics, by=()):
    """One row per (backbone, dataset, strategy, budget, *by) with mean/std over its runs (seeds, and the folds of
    ``data.folds`` runs: ``-m data.fold=0,1,2,3,4`` gives one row over the five folds) of each metric."""
    groups = defaultdict(list)
    for s in summaries:
        values = {m: metric_of(s, m) for m in metrics}
        if values[metrics[0]] is not None:
            extra = tuple((s.get("by") or {}).get(k) for k in by)
            pair = (s["seed"], (s.get("split") or {}).get("fingerprint"))  # runs on the same samples pair up
            groups[(s["backbone"], s["dataset"], s["strategy"], s["samples_per_class"], extra)].append((pair, values))
    table = []

    def order(item):
        (backbone, dataset, strategy, budget, extra), _ = item
        return (backbone, dataset, strategy, float("inf") if budget is None else budget,
                tuple(_sortable(v) for v in extra))

    for (backbone, dataset, strategy, budget, extra), runs in sorted(groups.items(), key=order):
        row = {"backbone": backbone, "dataset": dataset, "strategy": strategy, "samples_per_class": budget,
               "by": dict(zip(by, extra)), "seeds": sorted(pair[0] for pair, _ in runs), "stats": {},
               "values": {pair: v[metrics[0]] for pair, v in runs}}
        for m in metrics:
            numbers = [v[m] for _, v in runs if v[m] is not None]
            if numbers:
                row["stats"][m] = (statistics.fmean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else 0.0)
        row["mean"], row["std"] = row["stats"][metrics[0]]
        table.append(row)
    return table


def compare_with_scratch(table, metric: str) -> list:
    """Sets each transfer row's ``vs_scratch``: its mean minus the ``scratch`` row's of the same backbone, dataset,
    budget and --by values (or of the only scratch row of that dataset, budget and --by values), and whether
    that is negative transfer: below scratch beyond noise, i.e. the 95 % bootstrap interval of the paired
    differences (same seeds and splits) lies below 0; where the runs do not pair, below scratch by more than the
    row's own standard deviation over seeds. Returns the negative-transfer rows. ``metric`` is the table's first
    metric (the one ``values`` holds); only for metrics where higher is better."""
    scratch = {}
    for r in table:
        if r["strategy"] == "scratch":
            key = (r["dataset"], r["samples_per_class"], tuple(r["by"].items()))
            scratch.setdefault(key, {})[r["backbone"]] = r
    flagged = []
    for r in table:
        same = scratch.get((r["dataset"], r["samples_per_class"], tuple(r["by"].items())), {})
        base = same.get(r["backbone"]) or (next(iter(same.values())) if len(same) == 1 else None)
        if r["strategy"] == "scratch" or base is None or metric not in r["stats"] or metric not in base["stats"]:
            continue
        (mean, std), (base_mean, _) = r["stats"][metric], base["stats"][metric]
        test = paired(r["values"], base["values"])
        negative = (test["high"] < 0) if test is not None else mean < base_mean - std
        r["vs_scratch"] = {"diff": mean - base_mean, "negative": negative, "scratch": base, "paired": test}
        if r["vs_scratch"]["negative"]:
            flagged.append(r)
    return flagged


def comparison_groups(table):
    """The rows compared with each other: same dataset, budget and --by values (every backbone and baseline), best
    mean first."""
    groups = defaultdict(list)
    for r in table:
        groups[(r["dataset"], str(r["samples_per_class"]), tuple(r["by"].items()))].append(r)
    return [sorted(rows, key=lambda r: -r["mean"]) for _, rows in sorted(groups.items(), key=str)]


def compare_with_best(table) -> list:
    """Sets each row's ``vs_best``: the paired difference (same seeds and splits) of its group's best row minus it,
    with its bootstrap interval; ``within_noise`` when that interval includes 0. Returns every pair of rows of a
    group as (better, worse, paired result or None). For metrics where higher is better."""
    pairs = []
    for rows in comparison_groups(table):
        if len(rows) < 2:
            continue
        group = [(a, b, paired(a["values"], b["values"])) for i, a in enumerate(rows) for b in rows[i + 1:]]
        rows[0]["vs_best"] = None
        for a, r, test in group[:len(rows) - 1]:  # the best row against each other one
            r["vs_best"] = {"diff": a["mean"] - r["mean"], "paired": test,
                            "within_noise": test is not None and not beyond_noise(test)}
        pairs += group
    return pairs


def _label(r) -> str:
    return " ".join([r["strategy"], f"({r['backbone']})"] + [f"{k}={v}" for k, v in r["by"].items()])


def _vs_best(r) -> str:
    best = r.get("vs_best", "-")
    if best is None or best == "-":
        return "best" if best is None else "-"
    note = " (within noise)" if best["within_noise"] else "" if best["paired"] else " (unpaired)"
    return f"{-100 * best['diff']:+.1f}{note}"


def markdown(table, metrics, by=(), pairs=()) -> str:
    compared = any("vs_scratch" in r for r in table)
    ranked = any("vs_best" in r for r in table)
    lines = ["| backbone | dataset | strategy | labels/class | " + "".join(f"{k} | " for k in by)
             + " | ".join(f"{m} % (mean ± std)" for m in metrics) + (" | vs scratch" if compared else "")
             + (" | vs best" if ranked else "") + " | runs |",
             "|---|---|---|---|" + "---|" * (len(by) + len(metrics) + compared + ranked) + "---|"]
    for r in table:
        budget = "all" if r["samples_per_class"] is None else r["samples_per_class"]
        cells = [f"{100 * r['stats'][m][0]:.1f} ± {100 * r['stats'][m][1]:.1f}" if m in r["stats"] else "-"
                 for m in metrics]
        if compared:
            versus = r.get("vs_scratch")
            cells.append("-" if versus is None else f"{100 * versus['diff']:+.1f}"
                         + (" **negative transfer**" if versus["negative"] else ""))
        if ranked:
            cells.append(_vs_best(r))
        lines.append(f"| {r['backbone']} | {r['dataset']} | {r['strategy']} | {budget} | "
                     + "".join(f"{r['by'].get(k)} | " for k in by) + " | ".join(cells) + f" | {len(r['seeds'])} |")
    flagged = [r for r in table if (r.get("vs_scratch") or {}).get("negative")]
    if compared:
        lines.append("")
        lines.append(f"Negative transfer (mean {metrics[0]} below training from scratch on the same budget beyond "
                     "noise: the paired differences' 95 % bootstrap interval below 0): " + ("none." if not flagged else ""))
        for r in flagged:
            base = r["vs_scratch"]["scratch"]
            lines.append(f"- {r['strategy']} with {r['backbone']} on {r['dataset']} at {r['samples_per_class']} "
                         f"labels/class: {100 * r['mean']:.1f} ± {100 * r['std']:.1f} % against scratch's "
                         f"{100 * base['mean']:.1f} % ({100 * r['vs_scratch']['diff']:+.1f} points)")
    if pairs:
        lines += ["", f"Paired differences of {metrics[0]} (points; the same seeds and splits; 95 % bootstrap interval "
                  "over the pairs; exact sign-flip p; **bold**: beyond noise, the interval excludes 0; with 3 pairs "
                  "that means every pair agrees on the sign, and p cannot go below 0.25):", ""]
        for a, b, test in pairs:
            budget = "all" if a["samples_per_class"] is None else a["samples_per_class"]
            head = f"- {budget}/class: {_label(a)} - {_label(b)}: "
            if test is None:
                lines.append(head + f"{100 * (a['mean'] - b['mean']):+.1f}, no paired runs")
                continue
            text = (f"{100 * test['diff']:+.1f} [{100 * test['low']:+.1f}, {100 * test['high']:+.1f}], "
                    f"p = {test['p']:.2f}, {test['pairs']} pairs")
            lines.append(head + (f"**{text}**" if beyond_noise(test) else text))
    return "\n".join(lines) + "\n"


def _save(fig, ax, path: Path, legend_size=None) -> None:
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot(table, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    by_strategy = defaultdict(list)
    for r in table:
        if r["samples_per_class"] is not None:
            label = " ".join([r["strategy"]] + [f"{k}={v}" for k, v in r["by"].items()])
            by_strategy[(r["backbone"] in BASELINE_BACKBONES, label)].append(r)
    for (baseline, label), rows in sorted(by_strategy.items()):
        rows.sort(key=lambda r: r["samples_per_class"])
        ax.errorbar([r["samples_per_class"] for r in rows], [100 * r["mean"] for r in rows],
                    yerr=[100 * r["std"] for r in rows], marker="" if baseline else "o", capsize=3, label=label,
                    linestyle="--" if baseline else "-", color="grey" if baseline else None)
    ax.set_xscale("log")
    budgets = sorted({r["samples_per_class"] for rows in by_strategy.values() for r in rows})
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("labelled samples per class")
    ax.set_ylabel(f"{metric} (%)")
    title = {(r["backbone"], r["dataset"]) for r in table if r["backbone"] not in BASELINE_BACKBONES}
    ax.set_title(", ".join(f"{b} on {d}" for b, d in sorted(title)))
    _save(fig, ax, path)


def plot_tradeoff(table, x_metric: str, y_metric: str, path: Path) -> None:
    """One point per row (strategy, budget, --by values): mean of ``x_metric`` against mean of ``y_metric``,
    with the standard deviation over seeds as error bars on both axes (e.g. target accuracy vs forgetting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in table:
        if x_metric not in r["stats"] or y_metric not in r["stats"]:
            continue
        (x, dx), (y, dy) = r["stats"][x_metric], r["stats"][y_metric]
        label = " ".join([r["strategy"]] + [f"{k}={v}" for k, v in r["by"].items()])
        ax.errorbar([100 * x], [100 * y], xerr=[100 * dx], yerr=[100 * dy], marker="o", capsize=3, label=label)
    ax.set_xlabel(f"{x_metric} (%)")
    ax.set_ylabel(f"{y_metric} (points)" if "forgetting" in y_metric else f"{y_metric} (%)")
    title = {(r["backbone"], r["dataset"], r["samples_per_class"]) for r in table}
    ax.set_title(", ".join(f"{b} on {d}, {n} labels/class" for b, d, n in sorted(title, key=str)), fontsize=9)
    _save(fig, ax, path, legend_size=8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--metric", action="append", default=None,
                        help="metric(s) for the table, repeatable (default test/acc); the plot shows the first. "
                             "source/forgetting, source/acc_after for backbone=checkpoint runs")
    parser.add_argument("--by", action="append", default=[], metavar="KEY",
                        help="also group by this config key (e.g. strategy.lr), repeatable: for hyperparameter sweeps")
    parser.add_argument("--tradeoff", metavar="X,Y", default=None,
                        help="also plot metric Y against metric X, one point per strategy (tradeoff.png), e.g. "
                             "test/acc,source/forgetting; both are added to the table")
    parser.add_argument("--out", type=Path, default=None, help="folder for report.md and report.png (default: sweep dir)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: no such directory: {args.sweep_dir}", file=sys.stderr)
        return 2
    metrics = args.metric or ["test/acc"]
    tradeoff = args.tradeoff.split(",") if args.tradeoff else []
    if args.tradeoff and (len(tradeoff) != 2 or not all(tradeoff)):
        print(f"error: --tradeoff takes two metrics X,Y (e.g. test/acc,source/forgetting), got {args.tradeoff!r}",
              file=sys.stderr)
        return 2
    metrics += [m for m in tradeoff if m not in metrics]
    summaries = load_summaries(args.sweep_dir, args.by)
    table = aggregate(summaries, metrics, args.by)
    if not table:
        print(f"error: no summary.json with {metrics[0]} under {args.sweep_dir}", file=sys.stderr)
        return 2
    out = args.out or args.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    compare_with_scratch(table, metrics[0])
    pairs = compare_with_best(table)
    text = markdown(table, metrics, args.by, pairs)
    (out / "report.md").write_text(text)
    plot(table, metrics[0], out / "report.png")
    written = [out / "report.md", out / "report.png"]
    if tradeoff:
        plot_tradeoff(table, *tradeoff, out / "tradeoff.png")
        written.append(out / "tradeoff.png")
    print(text)
    print(f"wrote {', '.join(map(str, written))} from {len(summaries)} runs")
    return 0


def run() -> None:
    """Console script ``tl-report``."""
    sys.exit(main())


if __name__ == "__main__":
    run()
