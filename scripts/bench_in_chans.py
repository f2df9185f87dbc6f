"""Grayscale input: EfficientNet-Lite0 (embedded ImageNet weights) fed one channel (``backbone.in_chans=1``, the
input filters summed over RGB) vs the default 3-channel replication of the gray image. Same process, same images:
the data pipeline (transform of 28x28 Fashion-MNIST-sized uint8 arrays) and the model's train and eval steps,
in images/s, and the 1-channel/3-channel ratio.

    python scripts/bench_in_chans.py [--size 64] [--repeats 20]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from scripts.bench_channels_last import throughput  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    from tl_lightning.backbones.registry import build_backbone
    from tl_lightning.compose import compose_config

    raw = np.random.default_rng(0).integers(0, 256, (512, 28, 28), dtype=np.uint8)
    results = {}
    for in_chans in (3, 1):
        cfg = compose_config([f"backbone.in_chans={'null' if in_chans == 3 else 1}", "logger=csv"], ".")
        backbone = build_backbone(cfg.backbone, pretrained=True, image_size=args.size)
        model = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.feature_dim, 10))
        model = model.to(memory_format=torch.channels_last)  # as trainer=cpu runs it
        transform = backbone.preprocessing.transform(train=False)
        transform(raw[0])
        start = time.perf_counter()
        images = torch.stack([transform(x) for x in raw])
        data = len(raw) / (time.perf_counter() - start)
        images = images.contiguous(memory_format=torch.channels_last)
        train = throughput(model, images[:16], True, args.repeats)
        evaluate = throughput(model, images[:100], False, max(3, args.repeats // 4))
        results[in_chans] = (data, train, evaluate)
        print(f"in_chans={in_chans}: input {tuple(images.shape[1:])}; transform {data:7.0f} img/s, "
              f"train batch 16 {train:5.0f} img/s, eval batch 100 {evaluate:5.0f} img/s")
    one, three = results[1], results[3]
    print(f"ratio 1/3 channels: transform {one[0] / three[0]:.2f}, train {one[1] / three[1]:.2f}, "
          f"eval {one[2] / three[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
