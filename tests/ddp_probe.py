"""A callback the DDP test adds through callbacks.extra: each rank writes a digest of its weights."""

import hashlib
import os

import lightning as L


class WeightDigest(L.Callback):
    def __init__(self, path: str):
        self.path = path

    def on_train_end(self, trainer, pl_module) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        os.makedirs(self.path, exist_ok=True)
        with open(os.path.join(self.path, f"rank{trainer.global_rank}.sha256"), "w") as fh:
            fh.write(f"{digest.hexdigest()} world={trainer.world_size} step={trainer.global_step}\n")
