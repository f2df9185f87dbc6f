"""Callbacks the end-to-end tests add through callbacks.extra."""

import hashlib
import os
import signal

import lightning as L


def weights_digest(module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class WeightDigest(L.Callback):
    """Each rank writes a digest of its weights (and its loss penalty) after every epoch and at the end."""

    def __init__(self, path: str):
        self.path = path

    def _write(self, trainer, pl_module, line: str) -> None:
        os.makedirs(self.path, exist_ok=True)
        with open(os.path.join(self.path, f"rank{trainer.global_rank}.sha256"), "a") as fh:
            fh.write(line + "\n")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        penalty = trainer.callback_metrics.get(f"train/{pl_module.strategy.name}")  # ewc, l2sp: their loss term
        phase = getattr(pl_module.strategy, "phase", None)
        self._write(trainer, pl_module, f"epoch={trainer.current_epoch} phase={phase} "
                    f"trainable={sum(p.requires_grad for p in pl_module.parameters())} "
                    f"penalty={None if penalty is None else float(penalty)!r} {weights_digest(pl_module)}")

    def on_train_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module, f"end {weights_digest(pl_module)} world={trainer.world_size} "
                    f"step={trainer.global_step}")


class KillAtEpochStart(L.Callback):
    """SIGKILL this process when the given epoch starts (after the previous epoch's last.ckpt is written)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class SlowBatches(L.Callback):
    """Sleep after every training batch, so a test can signal a run while it is surely still training."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time

        time.sleep(self.seconds)


class SeenBatches(L.Callback):
    """Writes ``batch[key]`` of every training batch, one line per epoch, to ``path`` ("{rank}" in it: the rank);
    a dotted key reads a part of the batch (``unlabeled.index``)."""

    def __init__(self, path: str, key: str = "target"):
        self.path, self.key, self.epoch = path, key, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        value = batch
        for part in self.key.split("."):
            value = value[part]
        self.epoch += value.tolist()

    def on_train_epoch_end(self, trainer, pl_module):
        path = self.path.format(rank=trainer.global_rank)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as fh:
            fh.write(" ".join(map(str, self.epoch)) + "\n")
        self.epoch = []


class SaveProbeLogits(L.Callback):
    """After testing (the best checkpoint's weights in the training module), save its logits on a fixed input."""

    def __init__(self, path: str, size: int = 32):
        self.path, self.size = path, size

    def on_test_end(self, trainer, pl_module) -> None:
        import torch

        inputs = torch.randn(4, 3, self.size, self.size, generator=torch.Generator().manual_seed(0))
        pl_module.eval()
        with torch.no_grad():
            torch.save({"inputs": inputs, "logits": pl_module(inputs)}, self.path)
