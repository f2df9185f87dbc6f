"""Download a backbone's pretrained weights into the caches the harness reads.

Run it where there is internet (a cluster's login node), with the same overrides as
the training run; compute nodes then find the files offline:

    python scripts/prefetch_weights.py backbone=resnet50
    python scripts/prefetch_weights.py backbone=timm backbone.name=convnext_tiny

torchvision files go to $TORCH_HOME/hub/checkpoints, timm files to the Hugging Face
cache ($HF_HOME/hub); share those folders with the compute nodes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv) -> int:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from tl_lightning.compose import CONFIG_DIR
    from tl_lightning.config.schema import BackboneConf
    from tl_lightning.errors import USER_ERROR_EXIT_CODE, TLError

    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=list(argv))
        backbone_cfg = OmegaConf.merge(OmegaConf.structured(BackboneConf), cfg.backbone)
        from tl_lightning.backbones.registry import build_backbone

        backbone = build_backbone(backbone_cfg, pretrained=True, choice=" ".join(argv))
    except (TLError, HydraException, OmegaConfBaseException) as exc:
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    print(f"cached: {backbone.name} ({sum(p.numel() for p in backbone.parameters()):,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
