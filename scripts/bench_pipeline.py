"""The input pipeline end to end: how far the whole training and evaluation step falls behind the model alone.

Two workloads, each in one invocation:

- ``jpeg``: a folder of real JPEG photographs at 256-512 px. They are built offline, once: seeded crops, flips and
  rescales of the photographs scikit-learn and matplotlib ship, re-encoded at quality 90, 10 classes. The harness's
  ``image_folder`` datamodule reads them with the backbone's 224 px transforms.
- ``default``: the default job's data (Fashion-MNIST, 64 px, arrays in memory).

For each workload it prints:

1. the loader alone: decode + transform images/s with 0, 1 and 2 workers (the first batch, which pays for
   starting the workers, is timed separately);
2. the model alone on one fixed batch: training images/s (forward, backward, AdamW step) and evaluation images/s;
3. end to end: the same model fed by the harness's loader, batch after batch, and the ratio end-to-end / fixed
   batch. That ratio is the figure to raise.

The model is EfficientNet-Lite0 with its embedded weights and a new head, on the CPU unless --device says
otherwise.

    python scripts/bench_pipeline.py                          # both workloads, 12 batches each
    python scripts/bench_pipeline.py --workload jpeg --batches 20 --device cuda
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def build_jpeg_folder(root: str, files: int, seed: int = 0) -> str:
    """<root>/class<k>/<i>.jpg, built once (a complete folder is reused)."""
    from PIL import Image

    from tl_lightning.data.fashion_mnist_m import photograph_paths

    done = os.path.join(root, ".complete")
    if os.path.exists(done) and int(open(done).read() or 0) == files:
        return root
    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in photograph_paths()]
    for k in range(10):
        os.makedirs(os.path.join(root, f"class{k}"), exist_ok=True)
    for i in range(files):
        photo = photos[i % len(photos)]
        side = int(rng.integers(256, 513))
        scale = max(side / min(photo.size), float(rng.uniform(0.6, 1.6)) * side / min(photo.size))
        big = photo.resize((max(side, round(photo.width * scale)), max(side, round(photo.height * scale))))
        x, y = int(rng.integers(0, big.width - side + 1)), int(rng.integers(0, big.height - side + 1))
        crop = big.crop((x, y, x + side, y + int(side * rng.uniform(0.75, 1.0))))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop.save(os.path.join(root, f"class{i % 10}", f"{i:05d}.jpg"), quality=90)
    with open(done, "w") as fh:
        fh.write(str(files))
    return root


def datamodule(workload: str, root: str, workers: int, batch_size: int, prep):
    from omegaconf import OmegaConf

    from tl_lightning.config.validate import validate_data
    from tl_lightning.data import build_datamodule

    if workload == "jpeg":
        node = {"name": "image_folder", "root": root, "image_size": 224, "augment": "basic", "val_fraction": 0.05,
                "test_fraction": 0.05}
    else:  # the default job's data settings (conf/data/fashion_mnist.yaml)
        node = {"name": "fashion_mnist", "augment": "basic", "samples_per_class": None}
    cfg = validate_data(OmegaConf.create({**node, "num_workers": workers, "batch_size": batch_size}))
    dm = build_datamodule(cfg, prep)
    dm.setup("fit")
    return dm


def loader_rate(loader, batches: int):
    """(first batch s, images/s over the next ``batches``)."""
    start = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter() - start
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        batch = next(it)
        seen += len(batch["target"])
    return first, seen / (time.perf_counter() - start)


def model(image_size: int, classes: int, device: str):
    from omegaconf import OmegaConf

    from tl_lightning.backbones.registry import build_backbone

    backbone = build_backbone(OmegaConf.create({"kind": "efficientnet_lite0", "name": "efficientnet_lite0",
                                                "weights": None}), pretrained=True, image_size=image_size)
    net = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.feature_dim, classes)).to(device)
    return backbone, net


def step_rate(net, batches, device: str, train: bool, warmup: int = 2) -> float:
    """Images/s of the model over ``batches`` (an iterable of harness batches; a list repeats one fixed batch)."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    net.train(train)
    seen, start = 0, None
    for k, batch in enumerate(batches):
        if k == warmup:
            sync(device)
            start, seen = time.perf_counter(), 0
        x, y = batch["inputs"].to(device, non_blocking=True), batch["target"].to(device, non_blocking=True)
        if train:
            loss = torch.nn.functional.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            with torch.inference_mode():
                net(x)
        seen += len(y)
    sync(device)
    return seen / (time.perf_counter() - start)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def limited(loader, n: int):
    for k, batch in enumerate(loader):
        if k >= n:
            return
        yield batch


def run(workload: str, args) -> None:
    root = build_jpeg_folder(args.folder, args.files) if workload == "jpeg" else ""
    size, batch_size = (224, args.batch_size) if workload == "jpeg" else (64, 16)
    backbone, net = model(size, 10, args.device)
    prep = backbone.preprocessing
    print(f"\n== {workload}: " + (f"{args.files} JPEGs of 256-512 px in {root}, 224 px" if root else
                                  "Fashion-MNIST (arrays in memory), 64 px") + f", batch {batch_size}, {args.device}")
    print(f"{'measurement':<44} {'images/s':>10}  note")
    for workers in (0, 1, 2):
        dm = datamodule(workload, root, workers, batch_size, prep)
        first, rate = loader_rate(dm.labelled_train_loader(), args.batches)
        print(f"{f'loader alone, train transform, {workers} workers':<44} {rate:>10.1f}  first batch {first:.2f} s")
    first, rate = loader_rate(dm.eval_loader("train"), args.batches)
    print(f"{'loader alone, eval transform, 2 workers':<44} {rate:>10.1f}  first batch {first:.2f} s")
    for train in (True, False):
        what = "train" if train else "eval"
        fixed = next(iter(dm.labelled_train_loader() if train else dm.eval_loader("train")))
        rate = step_rate(net, [fixed] * (args.batches + 2), args.device, train)
        print(f"{f'model alone, one fixed batch, {what}':<44} {rate:>10.1f}  batch {len(fixed['target'])}")
    for workers in (0, 2):
        dm = datamodule(workload, root, workers, batch_size, prep)
        for train, loader in ((True, dm.labelled_train_loader()), (False, dm.eval_loader("train"))):
            what = "train" if train else "eval"
            fixed = next(iter(loader))  # the fixed batch again, right before: the ratio is not skewed by drift
            alone = step_rate(net, [fixed] * (args.batches + 2), args.device, train)
            rate = step_rate(net, limited(loader, args.batches + 2), args.device, train)
            print(f"{f'end to end, {what}, {workers} workers':<44} {rate:>10.1f}  {rate / alone:.2f}x the fixed "
                  f"batch measured just before ({alone:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("jpeg", "default", "both"), default="both")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per measurement")
    parser.add_argument("--batch-size", type=int, default=32, help="jpeg workload (the default job uses 16)")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--folder", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tl_bench_jpegs"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    for workload in (("jpeg", "default") if args.workload == "both" else (args.workload,)):
        run(workload, args)


if __name__ == "__main__":
    main()
