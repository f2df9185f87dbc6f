"""The domain-adaptation table of a sweep: target and source test accuracy (mean +- std over seeds), the feature
gap before and after, and Welch's t-test of each method's target accuracy against the source-only runs.

    python scripts/adaptation_table.py logs/train/multiruns/<date> [more sweep dirs]     (docs/adaptation.md)

A run's row is its command-line overrides other than the seed, the logger and the experiment (read from
<run>/.hydra/overrides.yaml), e.g. ``adapt=dann`` or ``data.samples_per_class=4 adapt=fixmatch``; each row is
compared with the row of the same overrides and adapt=source_only.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import ttest_ind

IGNORED = ("seed=", "logger=", "experiment=", "hydra.")


def method_of(run: Path) -> str:
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
    kept = [item for item in overrides if not item.startswith(IGNORED)]
    if not any(item.startswith("adapt=") for item in kept):
        kept.append("adapt=source_only")
    return " ".join(sorted(kept, key=lambda item: (item.startswith("adapt="), item)))


def baseline_of(method: str) -> str:
    """The same run without the unlabelled data's method: adapt=source_only, no option of the method's own."""
    kept = [item for item in method.split() if not item.startswith(("adapt=", "data.unlabeled", "loss.terms"))]
    return " ".join(kept + ["adapt=source_only"])


def main(sweeps) -> None:
    rows = defaultdict(list)
    for path in sorted(p for sweep in sweeps for p in Path(sweep).glob("**/summary.json")):
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
    print("| run | target test % (mean ± std) | per seed | source test % | PAD before -> after | MMD² after | "
          "p vs source only | wall time |")
    print("|---|---|---|---|---|---|---|---|")
    for method, runs in sorted(rows.items(), key=lambda kv: (baseline_of(kv[0]), kv[0] != baseline_of(kv[0]), kv[0])):
        runs.sort(key=lambda r: r["seed"])
        target = np.array([r["target"] for r in runs])
        base = [r["target"] for r in rows.get(baseline_of(method), [])]
        p = ttest_ind(target, base, equal_var=False).pvalue if method != baseline_of(method) and len(base) > 1 \
            and len(target) > 1 else None
        label = method + (" (oracle selection)" if any(r["oracle"] for r in runs) else "")
        print(f"| {label} | {target.mean():.1f} ± {target.std(ddof=1) if len(target) > 1 else 0:.1f} | "
              f"{', '.join(f'{t:.1f}' for t in target)} | {np.mean([r['source'] for r in runs]):.1f} | "
              f"{np.mean([r['before'] for r in runs]):.2f} -> {np.mean([r['after'] for r in runs]):.2f} | "
              f"{np.mean([r['mmd_after'] for r in runs]):.4f} | {'-' if p is None else f'{p:.3f}'} | "
              f"{np.mean([r['wall'] for r in runs]):.0f} s |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["logs/train/multiruns"])
