"""How much of a run's forgetting comes from BatchNorm running statistics?

For each target run made from a backbone=checkpoint source: the source task's test accuracy with the
run's tested weights (best.ckpt), and again with the same weights but the source checkpoint's
BatchNorm running statistics put back. The difference is the part of the forgetting that the
re-estimated statistics alone cause.

    python scripts/forgetting_bn.py logs/split_fashion/target
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    args = parser.parse_args()
    from tl_lightning.backbones.registry import build_backbone
    from tl_lightning.data.base import batch_size_for
    from tl_lightning.source_eval import SourceEvaluation

    print("| run | strategy | seed | source acc before | after | after, source BN statistics restored |")
    print("|---|---|---|---|---|---|")
    def job_order(path: Path):  # multirun job dirs are numbers: 2 before 10
        name = path.parent.name
        return (0, int(name), "") if name.isdigit() else (1, 0, name)

    for summary_path in sorted(args.sweep_dir.glob("*/summary.json"), key=job_order):
        summary = json.loads(summary_path.read_text())
        if not summary.get("source"):
            continue
        cfg = OmegaConf.load(summary_path.parent / "config_resolved.yaml")
        backbone = build_backbone(cfg.backbone, pretrained=False, image_size=cfg.data.get("image_size"))
        evaluation = SourceEvaluation(backbone.source_task, backbone, cfg.paths.data_dir, batch_size_for(cfg.data, "test"))
        source_state = {k: v.clone() for k, v in backbone.state_dict().items()}
        tested = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
        backbone.load_state_dict({k[len("backbone."):]: v for k, v in tested.items() if k.startswith("backbone.")})
        after = evaluation.accuracy()
        stats = {k: v for k, v in source_state.items() if k.endswith(("running_mean", "running_var"))}
        backbone.load_state_dict(stats, strict=False)
        restored = evaluation.accuracy()
        print(f"| {summary_path.parent.name} | {summary['strategy']} | {summary['seed']} | "
              f"{100 * summary['source']['acc_before']:.1f} | {100 * after:.1f} | {100 * restored:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
