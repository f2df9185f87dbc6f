"""Harness overhead: the same epochs, model, data and batch size through `tl_lightning`
(Lightning Trainer, default callbacks, CSV logger, checkpoints, confusion-matrix
pictures, test on the best checkpoint) and through a plain PyTorch loop (train,
validate and checkpoint each epoch, test the best weights), in one invocation.
Prints both wall times, each repeat's ratio and the ratio of the medians; target: harness <= 1.03x.

The workload is the default job as it was when the numbers of docs/speed.md were measured
(EfficientNet-Lite0 with its embedded weights, Fashion-MNIST, 20 labels per class, 96 px,
30 val/test images per class, batch 16, one lr of 1e-4, BatchNorm in train mode, NCHW), pinned
below so both loops do the same work, with early stopping off, so both run the same epochs.

    python scripts/bench_overhead.py --repeats 4     # 6 epochs, median of 4 (after a 1-epoch warm-up)
    python scripts/bench_overhead.py --epochs 12 --repeats 3
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

OVERRIDES = [
    "backbone=efficientnet_lite0", "data=fashion_mnist", "strategy=finetune", "logger=csv",
    "callbacks.rich_progress_bar.enabled=false", "callbacks.early_stopping.enabled=false",
    # what the plain loop does (it knows no BatchNorm policy or memory format), at the measured workload
    "strategy.lr=1e-4", "strategy.backbone_lr_mult=1.0", "strategy.bn=train", "trainer.channels_last=false",
    "data.image_size=96", "data.eval_per_class=30",
]


def plain_loop(cfg, out_dir: str) -> float:
    """What a careful user would write by hand for the same job."""
    import lightning as L

    from tl_lightning.backbones.registry import build_backbone
    from tl_lightning.data import build_datamodule
    from tl_lightning.optim import build_optimizer, cosine_with_warmup

    start = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    backbone = build_backbone(cfg.backbone, pretrained=True, image_size=cfg.data.image_size)
    dm = build_datamodule(cfg.data, backbone.preprocessing)
    dm.setup("fit")
    head = torch.nn.Sequential(torch.nn.Dropout(cfg.backbone.head_dropout), torch.nn.Linear(backbone.feature_dim, dm.num_classes))
    model = torch.nn.Sequential(backbone, head)
    groups = [{"params": list(backbone.parameters()), "lr": cfg.strategy.lr * cfg.strategy.backbone_lr_mult},
              {"params": list(head.parameters()), "lr": cfg.strategy.lr}]
    optimizer = build_optimizer(groups, cfg.optimizer)
    train_loader = dm.train_dataloader()
    total = cfg.trainer.max_epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(0, total, cfg.scheduler.min_lr_ratio))
    best = -1.0

    def accuracy(loader) -> float:
        model.eval()
        correct = count = 0
        with torch.no_grad():
            for batch in loader:
                correct += (model(batch["inputs"]).argmax(-1) == batch["target"]).sum().item()
                count += len(batch["target"])
        return correct / count

    for _ in range(cfg.trainer.max_epochs):
        model.train()
        for batch in train_loader:
            loss = torch.nn.functional.cross_entropy(model(batch["inputs"]), batch["target"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        acc = accuracy(dm.val_dataloader())
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        torch.save(state, f"{out_dir}/plain_last.pt")
        if acc > best:
            best = acc
            torch.save(state, f"{out_dir}/plain_best.pt")
    model.load_state_dict(torch.load(f"{out_dir}/plain_best.pt", weights_only=True)["model"])
    accuracy(dm.test_dataloader())
    return time.perf_counter() - start


def harness(cfg, out_dir: str) -> float:
    from tl_lightning.run import train

    start = time.perf_counter()
    train(cfg, out_dir)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both runs")
    args = parser.parse_args()
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    from tl_lightning.compose import compose_config

    plain, lightning = [], []
    for r in range(-1, args.repeats):  # repeat -1 is a 1-epoch warm-up, discarded
        epochs = 1 if r < 0 else args.epochs
        with tempfile.TemporaryDirectory() as out:
            cfg = compose_config(OVERRIDES + [f"trainer.max_epochs={epochs}"] + args.overrides, out)
            # alternate the order, so drift in machine load hits both alike
            if r % 2:
                t_harness, t_plain = harness(cfg, out), plain_loop(cfg, out)
            else:
                t_plain, t_harness = plain_loop(cfg, out), harness(cfg, out)
        print(f"repeat {r}{' (warm-up)' if r < 0 else ''}: plain {t_plain:.2f} s, harness {t_harness:.2f} s, "
              f"ratio {t_harness / t_plain:.3f}", flush=True)
        if r >= 0:
            plain.append(t_plain)
            lightning.append(t_harness)
    p, h = statistics.median(plain), statistics.median(lightning)
    print(f"workload: {' '.join(OVERRIDES + args.overrides)} trainer.max_epochs={args.epochs}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"plain PyTorch loop: {p:.2f} s (median of {args.repeats})")
    print(f"tl_lightning harness: {h:.2f} s (median of {args.repeats})")
    ratios = [t_h / t_p for t_h, t_p in zip(lightning, plain)]
    print(f"ratio harness/plain: {h / p:.3f} (medians; target <= 1.03); per repeat {min(ratios):.3f} to {max(ratios):.3f}")


if __name__ == "__main__":
    main()
