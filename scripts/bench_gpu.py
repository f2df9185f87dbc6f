"""GPU training throughput (images/s): ResNet-50 in bf16 with channels_last on synthetic data,
through the harness (TransferModule + Lightning Trainer) and through a plain PyTorch loop
on the same GPU, in one invocation; then 1 vs N devices through the harness when there are
several. Targets: harness >= 95% of the plain loop; >= 2,500 images/s on one H100.

    python scripts/bench_gpu.py                      # resnet50, batch 256, 224 px
    python scripts/bench_gpu.py --steps 30 --batch-size 128
    python scripts/bench_gpu.py --device cpu --arch resnet18 --image-size 32 --batch-size 8 --steps 4 --warmup 1   # smoke test

The data is one fixed batch, pinned in host memory and copied every step, so the input
pipeline does not limit either loop; weights are random (speed does not depend on them).
"""

import argparse
import collections
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402


class FixedBatches(Dataset):
    """The same pre-made batch in the harness's batch shape, ``steps`` times (batch_size=None in the DataLoader)."""

    def __init__(self, batch_size: int, size: int, steps: int, classes: int, pin: bool):
        self.x = torch.randn(batch_size, 3, size, size)
        self.y = torch.randint(0, classes, (batch_size,))
        if pin:
            self.x, self.y = self.x.pin_memory(), self.y.pin_memory()
        self.steps = steps
        self.index, self.group = torch.arange(batch_size), torch.full((batch_size,), -1)

    def __len__(self):
        return self.steps

    def __getitem__(self, i):
        return {"inputs": self.x, "target": self.y, "index": self.index, "group": self.group}


def build_model(arch: str, classes: int):
    from omegaconf import OmegaConf

    from tl_lightning.backbones.registry import build_backbone
    from tl_lightning.config.schema import BackboneConf

    cfg = OmegaConf.structured(BackboneConf)
    cfg.kind, cfg.name = "torchvision", arch
    backbone = build_backbone(cfg, pretrained=False)
    return backbone, torch.nn.Linear(backbone.feature_dim, classes)


def plain(args, device: str, bf16: bool = True, channels_last: bool = True) -> float:
    """A hand-written loop: SGD, autocast to bf16 (or fp32), channels_last (or NCHW)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    backbone, head = build_model(args.arch, args.classes)
    model = torch.nn.Sequential(backbone, head).to(device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = DataLoader(FixedBatches(args.batch_size, args.image_size, args.steps + args.warmup, args.classes,
                                     pin=device == "cuda"), batch_size=None)
    model.train()
    start = None
    for i, batch in enumerate(loader):
        x, y = batch["inputs"], batch["target"]
        if i == args.warmup:
            _sync(device)
            start = time.perf_counter()
        x = x.to(device, non_blocking=True).contiguous(memory_format=fmt)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - start)


class Throughput(L.Callback):
    """Times the training steps after warm-up: global images/s over all ranks."""

    def __init__(self, warmup: int, batch_size: int, device: str):
        self.warmup, self.batch_size, self.device = warmup, batch_size, device
        self.start, self.images_per_s = None, None

    def on_train_batch_start(self, trainer, module, batch, idx):
        if idx == self.warmup:
            _sync(self.device)
            self.start = time.perf_counter()
            if self.device == "cuda":  # count the host-device synchronisations of the timed steps
                self._catch = warnings.catch_warnings(record=True)
                self.syncs = self._catch.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")

    def on_train_epoch_end(self, trainer, module):
        if self.device == "cuda":
            torch.cuda.set_sync_debug_mode(0)
            self._catch.__exit__(None, None, None)
            where = collections.Counter(f"{Path(w.filename).name}:{w.lineno}" for w in self.syncs)
            print(f"host-device syncs in the timed steps: {len(self.syncs)} {dict(where.most_common(6))}")
        _sync(self.device)
        steps = trainer.num_training_batches - self.warmup
        self.images_per_s = steps * self.batch_size * trainer.world_size / (time.perf_counter() - self.start)


def harness(args, device: str, devices: int, ddp: bool = False) -> float:
    """TransferModule + lightning.Trainer (bf16-mixed, channels_last); ``ddp`` forces the DDP strategy on one device."""
    from omegaconf import OmegaConf

    from tl_lightning.config.schema import BackboneConf, LossConf, OptimizerConf, SchedulerConf, StrategyConf
    from tl_lightning.module import TransferModule
    from tl_lightning.strategies import build_strategy
    from tl_lightning.task import TaskDescription

    backbone, _ = build_model(args.arch, args.classes)
    st = OmegaConf.structured(StrategyConf)
    st.name, st.lr = "finetune", 0.1
    opt = OmegaConf.structured(OptimizerConf)
    opt.name = "sgd"
    sched = OmegaConf.structured(SchedulerConf)
    sched.name = "none"
    loss = OmegaConf.merge(OmegaConf.structured(LossConf), {"name": "ce"})
    cfg = OmegaConf.create({"backbone": OmegaConf.structured(BackboneConf), "optimizer": opt, "scheduler": sched,
                            "loss": loss})
    task = TaskDescription(class_names=tuple(str(c) for c in range(args.classes)))
    module = TransferModule(backbone, task, build_strategy(st), cfg)
    module.use_channels_last()
    timer = Throughput(args.warmup, args.batch_size, device)
    trainer = L.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=devices,
                        strategy="ddp" if devices > 1 or ddp else "auto",
                        precision="bf16-mixed", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[timer])
    loader = DataLoader(FixedBatches(args.batch_size, args.image_size, args.steps + args.warmup, args.classes,
                                     pin=device == "cuda"), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return timer.images_per_s


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--batch-size", type=int, default=256, help="per device")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name()}, {torch.cuda.device_count()} visible")
    rows = []

    def measure(name, fn):
        rows.append((name, fn()))
        print(f"{name}: {rows[-1][1]:,.0f} images/s", flush=True)

    measure("plain loop, bf16, channels_last", lambda: plain(args, args.device))
    measure("plain loop, fp32, NCHW", lambda: plain(args, args.device, bf16=False, channels_last=False))
    measure("plain loop, bf16, NCHW", lambda: plain(args, args.device, channels_last=False))
    measure("harness, bf16, channels_last", lambda: harness(args, args.device, 1))
    if args.device == "cuda":
        measure("harness, bf16, channels_last, DDP on 1 GPU", lambda: harness(args, args.device, 1, ddp=True))
    measure("plain loop, bf16, channels_last (again)", lambda: plain(args, args.device))
    n = torch.cuda.device_count() if args.device == "cuda" else 1
    if n > 1:
        measure(f"harness, bf16, channels_last, DDP on {n} GPUs", lambda: harness(args, args.device, n))
    base = (rows[0][1] + rows[-1 if n == 1 else -2][1]) / 2
    print(f"\n{args.arch}, batch {args.batch_size} per device, {args.image_size} px, {args.steps} timed steps "
          f"after {args.warmup}; ratio vs the plain bf16 channels_last loop (mean of its two runs)")
    for name, value in rows:
        print(f"| {name:<45} | {value:>9,.0f} | {value / base:5.2f} |")
    print("targets: harness >= 0.95 of the plain loop; >= 2,500 images/s on one H100")

if __name__ == "__main__":
    main()
