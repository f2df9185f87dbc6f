"""How well a transferability ranking predicts measured accuracy: Kendall's tau between the LogME (and LEEP)
of each backbone in a ``diagnose rank`` result and the mean test accuracy of the runs that trained on the same
data with that backbone, per strategy.

    python -m tl_lightning.diagnose rank data=digits 'backbones=[efficientnet_lite0,...]'
    python train.py -m data=digits strategy=linear_probe,finetune ...          # the same backbones
    python scripts/rank_vs_accuracy.py logs/diagnose/runs/<date>/diagnose.json logs/train/multiruns/<sweep>

A run matches a ranked backbone by (kind, name, pretrained, checkpoint path), read from its config_resolved.yaml
and summary.json; a backbone without runs of a strategy is left out of that strategy's tau.
"""

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def run_key(run_dir: Path, summary: dict):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / "config_resolved.yaml")
    path = cfg.backbone.path if cfg.backbone.kind == "checkpoint" else None
    pretrained = bool(summary.get("pretrained")) or cfg.backbone.kind == "checkpoint"
    return cfg.backbone.kind, cfg.backbone.name, pretrained, path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("diagnose_json", type=Path)
    parser.add_argument("sweep_dirs", type=Path, nargs="+")
    parser.add_argument("--metric", default="test/acc")
    args = parser.parse_args(argv)
    from scipy.stats import kendalltau

    ranking = json.loads(args.diagnose_json.read_text())["ranking"]
    measured = defaultdict(list)  # (key, strategy) -> accuracies over seeds
    for sweep in args.sweep_dirs:
        for path in sorted(sweep.rglob("summary.json")):
            summary = json.loads(path.read_text())
            if summary.get("dataset") != json.loads(args.diagnose_json.read_text())["dataset"]:
                continue
            value = (summary.get("test") or {}).get(args.metric)
            if value is not None:
                measured[(run_key(path.parent, summary), summary["strategy"])].append(value)
    strategies = sorted({s for _, s in measured})
    lines = ["| backbone | LogME | " + " | ".join(f"{s} {args.metric} %" for s in strategies) + " |",
             "|---|---|" + "---|" * len(strategies)]
    columns = {s: [] for s in strategies}
    for row in ranking:
        key = (row["kind"], row["name"], row["pretrained"], row["path"] if row["kind"] == "checkpoint" else None)
        cells = []
        for s in strategies:
            values = measured.get((key, s), [])
            if values:
                columns[s].append((row["logme"], statistics.fmean(values)))
                spread = f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else ""
                cells.append(f"{100 * statistics.fmean(values):.1f}{spread} ({len(values)})")
            else:
                cells.append("-")
        lines.append(f"| {row['backbone']} | {row['logme']:.4f} | " + " | ".join(cells) + " |")
    lines.append("")
    for s, pairs in columns.items():
        if len(pairs) >= 3:
            tau, p = kendalltau([a for a, _ in pairs], [b for _, b in pairs])
            lines.append(f"Kendall tau (LogME vs {s} {args.metric}) over {len(pairs)} backbones: {tau:+.2f} (p = {p:.2f})")
        else:
            lines.append(f"{s}: fewer than 3 backbones with runs; no tau")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
