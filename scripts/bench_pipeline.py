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

Each is measured without the decoded-sample cache (``data.cache=off``: decode, resize and augment every sample in
the loader) and with it (``data.cache=disk``: decoded once to uint8, memory-mapped; crop, flip and normalisation on
whole batches on the device), with the set-up time of both, cold and warm.

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


def datamodule(workload: str, root: str, workers: int, batch_size: int, prep, cache: str = "off",
               cache_dir: str = ""):
    from omegaconf import OmegaConf

    from tl_lightning.config.validate import validate_data
    from tl_lightning.context import DataPaths
    from tl_lightning.data import build_datamodule

    if workload == "jpeg":  # a quarter each for val and test: evaluation is timed on the test split
        node = {"name": "image_folder", "root": root, "image_size": 224, "augment": "basic", "val_fraction": 0.25,
                "test_fraction": 0.25}
    else:  # the default job's data settings (conf/data/fashion_mnist.yaml), 100 training images per class
        node = {"name": "fashion_mnist", "augment": "basic", "samples_per_class": 100, "eval_per_class": 100,
                "image_size": 64}
    cfg = validate_data(OmegaConf.create({**node, "num_workers": workers, "batch_size": batch_size,
                                          "eval_batch_size": batch_size, "cache": cache}))
    dm = build_datamodule(cfg, prep, DataPaths("data", cache_dir or None))
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


def step_rate(net, batches, device: str, train: bool, dm=None, warmup: int = 2) -> float:
    """Images/s of the model over ``batches`` (an iterable of harness batches; a list repeats one fixed batch). With
    ``dm``, each batch goes through its on_after_batch_transfer on the device, as in a run (data.cache's uint8
    batches are cropped, flipped and normalised there)."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    net.train(train)
    seen, start = 0, None
    for k, batch in enumerate(batches):
        if k == warmup:
            sync(device)
            start, seen = time.perf_counter(), 0
        batch = {"inputs": batch["inputs"].to(device, non_blocking=True),
                 "target": batch["target"].to(device, non_blocking=True)}
        if dm is not None:
            batch = dm.on_after_batch_transfer(batch, 0)
        x, y = batch["inputs"], batch["target"]
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


def transformed_rate(dm, loader, device: str, batches: int):
    """(first batch s, images/s) of a loader and the datamodule's on-device batch transform, without the model."""
    def gen():
        for batch in loader:
            batch = dm.on_after_batch_transfer({"inputs": batch["inputs"].to(device), "target": batch["target"]}, 0)
            sync(device)
            yield batch

    return loader_rate(gen(), batches)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def limited(loader, n: int):
    for k, batch in enumerate(loader):
        if k >= n:
            return
        yield batch


def row(what: str, rate: float, note: str) -> None:
    print(f"{what:<52} {rate:>10.1f}  {note}")


def run(workload: str, args) -> None:
    import tempfile

    root = build_jpeg_folder(args.folder, args.files) if workload == "jpeg" else ""
    size, batch_size = (224, args.batch_size) if workload == "jpeg" else (64, 16)
    backbone, net = model(size, 10, args.device)
    prep = backbone.preprocessing
    print(f"\n== {workload}: " + (f"{args.files} JPEGs of 256-512 px in {root}, 224 px" if root else
                                  "Fashion-MNIST (arrays in memory), 64 px") + f", batch {batch_size}, {args.device}")
    cache_dir = tempfile.mkdtemp(prefix="tl_bench_cache_")
    start = time.perf_counter()
    datamodule(workload, root, 0, batch_size, prep, "disk", cache_dir)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    datamodule(workload, root, 0, batch_size, prep, "disk", cache_dir)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    datamodule(workload, root, 0, batch_size, prep, "off")
    plain = time.perf_counter() - start
    print(f"set-up (split, verify or decode): cache off {plain:.2f} s, data.cache=disk cold {cold:.2f} s, "
          f"warm {warm:.2f} s")
    print(f"{'measurement':<52} {'images/s':>10}  note")
    for workers in (0, 1, 2):
        dm = datamodule(workload, root, workers, batch_size, prep)
        first, rate = loader_rate(dm.labelled_train_loader(), args.batches)
        row(f"loader alone, train, cache off, {workers} workers", rate, f"first batch {first:.2f} s")
    for workers in (0, 2):
        dm = datamodule(workload, root, workers, batch_size, prep, "disk", cache_dir)
        first, rate = transformed_rate(dm, dm.labelled_train_loader(), args.device, args.batches)
        row(f"loader alone, train, cache disk, {workers} workers", rate, f"first batch {first:.2f} s, with the "
            "batch transform")
    for train in (True, False):
        what = "train" if train else "eval"
        fixed = next(iter(dm.labelled_train_loader() if train else dm.test_dataloader()))
        fixed = dm.on_after_batch_transfer(fixed, 0)
        rate = step_rate(net, [fixed] * (args.batches + 2), args.device, train)
        row(f"model alone, one fixed batch, {what}", rate, f"batch {len(fixed['target'])}")
    for cache in ("off", "disk"):
        for workers in (0, 2):
            dm = datamodule(workload, root, workers, batch_size, prep, cache, cache_dir)
            for train, loader in ((True, dm.labelled_train_loader()), (False, dm.test_dataloader())):
                what = "train" if train else "eval"
                fixed = dm.on_after_batch_transfer(next(iter(loader)), 0)  # the fixed batch again, right before
                alone = step_rate(net, [fixed] * (args.batches + 2), args.device, train)
                rate = step_rate(net, limited(loader, args.batches + 2), args.device, train, dm)
                row(f"end to end, {what}, cache {cache}, {workers} workers", rate,
                    f"{rate / alone:.2f}x the fixed batch measured just before ({alone:.1f})")
    import shutil

    shutil.rmtree(cache_dir, ignore_errors=True)


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
