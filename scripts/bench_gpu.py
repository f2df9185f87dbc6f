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
import sys
import time
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


def plain(args, device: str) -> float:
    backbone, head = build_model(args.arch, args.classes)
    model = torch.nn.Sequential(backbone, head).to(device, memory_format=torch.channels_last)
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
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
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

    def on_train_epoch_end(self, trainer, module):
        _sync(self.device)
        steps = trainer.num_training_batches - self.warmup
        self.images_per_s = steps * self.batch_size * trainer.world_size / (time.perf_counter() - self.start)


def harness(args, device: str, devices: int) -> float:
    from omegaconf import OmegaConf

    from tl_lightning.config.schema import LossConf, OptimizerConf, SchedulerConf, StrategyConf
    from tl_lightning.module import TransferModule
    from tl_lightning.strategies import build_strategy

    backbone, _ = build_model(args.arch, args.classes)
    st = OmegaConf.structured(StrategyConf)
    st.name, st.lr = "finetune", 0.1
    opt = OmegaConf.structured(OptimizerConf)
    opt.name = "sgd"
    sched = OmegaConf.structured(SchedulerConf)
    sched.name = "none"
    loss = OmegaConf.merge(OmegaConf.structured(LossConf), {"name": "ce"})
    module = TransferModule(backbone, args.classes, build_strategy(st), opt, sched, loss)
    module.channels_last = True
    module.to(memory_format=torch.channels_last)
    timer = Throughput(args.warmup, args.batch_size, device)
    trainer = L.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=devices,
                        strategy="ddp" if devices > 1 else "auto",
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
    p = plain(args, args.device)
    h = harness(args, args.device, 1)
    print(f"{args.arch} bf16 channels_last, batch {args.batch_size}, {args.image_size} px, {args.steps} timed steps")
    print(f"plain PyTorch loop: {p:,.0f} images/s")
    print(f"tl_lightning harness, 1 device: {h:,.0f} images/s ({100 * h / p:.1f}% of plain; target >= 95%)")
    n = torch.cuda.device_count() if args.device == "cuda" else 1
    if n > 1:
        hn = harness(args, args.device, n)
        print(f"tl_lightning harness, {n} devices (DDP): {hn:,.0f} images/s ({hn / h:.2f}x one device)")


if __name__ == "__main__":
    main()
