"""Download a backbone's pretrained weights into the caches the harness reads.

Run it where there is internet (a cluster's login node), with the same overrides as
the training run; compute nodes then find the files offline:

    tl-prefetch backbone=resnet50                      # or: python scripts/prefetch_weights.py backbone=resnet50
    python scripts/prefetch_weights.py backbone=timm backbone.name=convnext_tiny

torchvision files go to $TORCH_HOME/hub/checkpoints, timm files to the Hugging Face
cache ($HF_HOME/hub); share those folders with the compute nodes.
"""

# Imports of tl_lightning inside functions keep start-up fast: the config is checked before torch is imported.

import sys


def main(argv) -> int:
    from tl_lightning.compose import compose_config
    from tl_lightning.errors import USER_ERROR_EXIT_CODE, TLError

    try:
        cfg = compose_config(list(argv), ".", validate=False)  # only the backbone group matters here
        from tl_lightning.backbones.registry import build_backbone

        backbone = build_backbone(cfg.backbone, pretrained=True, choice=" ".join(argv))
    except TLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    print(f"cached: {backbone.name} ({sum(p.numel() for p in backbone.parameters()):,} parameters)")
    return 0


def run() -> None:
    """Console script ``tl-prefetch``."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
