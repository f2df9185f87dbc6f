"""The domain-adaptation table of a sweep: target and source test accuracy (mean +- std over seeds), the feature
gap before and after, and Welch's t-test of each method's target accuracy against the source-only runs.

    python scripts/adaptation_table.py logs/train/multiruns/<date>      (docs/adaptation.md)

A run's method is its adapt choice (the hydra override), read from <run>/.hydra/overrides.yaml.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import ttest_ind


def method_of(run: Path) -> str:
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
    for item in overrides:
        if item.startswith("adapt="):
            return item.split("=", 1)[1]
    return "source_only"


def main(sweep: str) -> None:
    rows = defaultdict(list)
    for path in sorted(Path(sweep).glob("**/summary.json")):
        summary = json.loads(path.read_text())
        adaptation = summary.get("adaptation") or {}
        if "target_test" not in adaptation:
            continue
        gap = adaptation["feature_gap"]
        rows[method_of(path.parent)].append({
            "seed": summary["seed"], "target": 100 * adaptation["target_test"]["acc"],
            "source": 100 * adaptation["source_test"]["acc"], "before": gap["before"]["proxy_a_distance"],
            "after": gap["after"]["proxy_a_distance"], "mmd_after": gap["after"]["mmd2"],
            "wall": summary["wall_time_s"], "oracle": adaptation["selection"]["oracle"]})
    base = [r["target"] for r in rows.get("source_only", [])]
    print("| method | target test % (mean ± std) | per seed | source test % | PAD before -> after | MMD² after | "
          "p vs source only | wall time |")
    print("|---|---|---|---|---|---|---|---|")
    for method, runs in sorted(rows.items(), key=lambda kv: kv[0] != "source_only"):
        runs.sort(key=lambda r: r["seed"])
        target = np.array([r["target"] for r in runs])
        p = ttest_ind(target, base, equal_var=False).pvalue if method != "source_only" and len(base) > 1 else None
        label = method + (" (oracle selection)" if any(r["oracle"] for r in runs) else "")
        print(f"| {label} | {target.mean():.1f} ± {target.std(ddof=1) if len(target) > 1 else 0:.1f} | "
              f"{', '.join(f'{t:.1f}' for t in target)} | {np.mean([r['source'] for r in runs]):.1f} | "
              f"{np.mean([r['before'] for r in runs]):.2f} -> {np.mean([r['after'] for r in runs]):.2f} | "
              f"{np.mean([r['mmd_after'] for r in runs]):.4f} | {'-' if p is None else f'{p:.3f}'} | "
              f"{np.mean([r['wall'] for r in runs]):.0f} s |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "logs/train/multiruns")
