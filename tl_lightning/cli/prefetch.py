"""Download a backbone's pretrained weights (and a Hugging Face dataset) into the caches the harness reads.

Run it where there is internet (a cluster's login node), with the same overrides as
the training run; compute nodes then find the files offline:

    tl-prefetch backbone=resnet50                      # or: python scripts/prefetch_weights.py backbone=resnet50
    python scripts/prefetch_weights.py backbone=timm backbone.name=convnext_tiny

    tl-prefetch data=hf data.path=beans                # the dataset too (datasets' cache, $HF_DATASETS_CACHE)

torchvision files go to $TORCH_HOME/hub/checkpoints, timm files to the Hugging Face
cache ($HF_HOME/hub), datasets to $HF_DATASETS_CACHE; share those folders with the compute nodes.
"""

# Imports of tl_lightning inside functions keep start-up fast: the config is checked before torch is imported.

import sys


def main(argv) -> int:
    from tl_lightning.compose import compose_config
    from tl_lightning.errors import USER_ERROR_EXIT_CODE, TLError

    try:
        cfg = compose_config(list(argv), ".", validate=False)  # only the backbone and data groups matter here
        from tl_lightning.backbones.registry import build_backbone

        if any(a.startswith("data=") for a in argv):  # a datamodule that downloads says so with a prefetch function
            from tl_lightning.registry import DATAMODULES

            fetch = getattr(DATAMODULES.get(cfg.data.name), "prefetch", None)
            if fetch is not None:
                print(fetch(cfg.data))

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
