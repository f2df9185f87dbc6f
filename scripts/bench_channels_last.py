"""Memory format on CPU: EfficientNet-Lite0 evaluation and training throughput in NCHW and in
channels_last (NHWC), same process, same inputs. Prints images/s and the channels_last/NCHW ratio;
it is why conf/trainer/cpu.yaml turns trainer.channels_last on.

    python scripts/bench_channels_last.py                     # 64 and 96 px, eval batch 100, train batch 16
    python scripts/bench_channels_last.py --sizes 224 --repeats 5
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def throughput(model, x, train: bool, repeats: int) -> float:
    """Images per second over ``repeats`` passes after one warm-up pass."""
    model.train(train)

    def step():
        if train:
            model.zero_grad(set_to_none=True)
            model(x).sum().backward()
        else:
            with torch.inference_mode():
                model(x)

    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return repeats * len(x) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--eval-batch", type=int, default=100)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    from omegaconf import OmegaConf

    from tl_lightning.backbones.registry import build_backbone
    from tl_lightning.config.schema import BackboneConf

    cfg = OmegaConf.structured(BackboneConf(kind="efficientnet_lite0", name="tf_efficientnet_lite0"))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for size in args.sizes:
        model = build_backbone(cfg, pretrained=True, image_size=size)
        for mode, batch in (("eval", args.eval_batch), ("train", args.train_batch)):
            x = torch.randn(batch, 3, size, size)
            rates = {}
            for fmt in (torch.contiguous_format, torch.channels_last):
                model.to(memory_format=fmt)
                rates[fmt] = throughput(model, x.contiguous(memory_format=fmt), mode == "train", args.repeats)
            nchw, nhwc = rates[torch.contiguous_format], rates[torch.channels_last]
            print(f"{size} px {mode:5s} batch {batch:3d}: NCHW {nchw:6.0f} img/s, channels_last {nhwc:6.0f} img/s, "
                  f"ratio {nhwc / nchw:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
