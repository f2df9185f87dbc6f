"""``data.unlabeled``: a second data source whose labels are never read, trained on jointly with the labelled data.

It is any data option with overrides (``data.unlabeled={name: image_folder, root: /data/new_site}``; a folder of
images without class subfolders is read as one unlabelled pool). It splits with the labelled data's seed and
fractions and takes its whole training pool (tl_lightning/config/validate.py, ``unlabeled_config``). In fit, each
training batch is the labelled batch with an ``unlabeled`` part next to it:
``{"inputs", "target", "index", "group", "unlabeled": {"inputs", "index"[, "inputs_strong"]}}``, where the
unlabelled part holds ``data.unlabeled_ratio`` x ``data.batch_size`` samples of its training split and its
``target`` is -1. One epoch is one pass over the labelled data; the unlabelled side is a stream of seeded
permutations that goes on where the last epoch stopped (``CycledSampler``): deterministic per (seed, epoch), so a
resumed run continues exactly, and each DDP rank takes its own share. Its val and test splits, where they have
labels, are only evaluated: target accuracy after testing, ``target_val/acc`` each epoch when a monitor names it
(an oracle: selection on target labels), and the feature gap between the source's and the target's test
samples before and after training (``TargetEvaluation``; summary.json's ``adaptation`` section).
"""

import hashlib
import logging
import math
from typing import Any, Dict, List, Optional

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from tl_lightning.batch import collect, sample
from tl_lightning.config.validate import TARGET_STAGE, unlabeled_config
from tl_lightning.domain_gap import mmd2_permutation, proxy_a_distance
from tl_lightning.errors import ConfigError, DataError
from tl_lightning.registry import DATAMODULES

log = logging.getLogger(__name__)
NO_LABEL = -1  # the target of every unlabelled sample
UNLABELED_CLASS = "(unlabelled)"  # the one class of a folder of images without class subfolders
GAP_SAMPLES = 500  # a side, for the feature gap before and after training
GAP_PERMUTATIONS = 100


class UnlabeledSplit(Dataset):
    """A split's samples without their labels: the training transform (the weak view) and, with ``strong``, a
    second, strongly augmented view of the same sample (``inputs_strong``)."""

    def __init__(self, split, weak, strong=None):
        self.source, self.indices, self.weak, self.strong = split.source, split.indices, weak, strong

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = int(self.indices[k])
        raw = self.source.sample(i)
        item = sample(self.weak(raw), NO_LABEL, i)
        if self.strong is not None:
            item["inputs_strong"] = self.strong(raw)
        return item


class CycledSampler(DistributedSampler):
    """``per_rank`` indices of ``n`` per epoch and rank, from one endless stream of permutations of range(n), each
    seeded by (seed, its number): epoch e takes the stream's e-th window of ``per_rank * world`` draws, so every
    sample comes once before any comes twice, and rank r takes positions r, r + world, ... of the window. A
    ``DistributedSampler``, so Lightning does not wrap it under DDP."""

    def __init__(self, n: int, per_rank: int, seed: int, num_replicas: int = 1, rank: int = 0):
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.n, self.per_rank = n, per_rank
        self.worker_seeds = torch.Generator().manual_seed(seed * 100_003 + 77)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.worker_seeds.manual_seed(self.seed * 100_003 + epoch + 77)

    def window(self) -> torch.Tensor:
        total = self.per_rank * self.num_replicas
        start, end = self.epoch * total, (self.epoch + 1) * total
        first, last = start // self.n, (end - 1) // self.n
        perms = [torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + 50_021 + k))
                 for k in range(first, last + 1)]
        stream = torch.cat(perms)
        return stream[start - first * self.n: end - first * self.n]

    def __iter__(self):
        return iter(self.window()[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.per_rank


def joined_batch(batch):
    """The labelled batch with the unlabelled one as its ``unlabeled`` part (what the joined loader's pair becomes
    before it reaches the device); any other batch unchanged."""
    if isinstance(batch, dict) and set(batch) == {"labeled", "unlabeled"}:
        return {**batch["labeled"], "unlabeled": batch["unlabeled"]}
    return batch


class UnlabeledData:
    """The unlabelled datamodule of ``data.unlabeled`` and what the labelled datamodule does with it."""

    def __init__(self, cfg, preprocessing, paths):
        self.ratio, self.strong = cfg.unlabeled_ratio, cfg.unlabeled_strong
        self.cfg = unlabeled_config(cfg)
        try:
            self.datamodule = DATAMODULES.get(self.cfg.name)(self.cfg, preprocessing, paths)
        except ConfigError as exc:
            raise ConfigError(f"data.unlabeled: {exc}") from None
        self.datamodule.as_unlabeled = True  # a folder without class subfolders is then one pool
        self.labelled_classes: List[str] = []
        self.has_labels = False  # its val/test splits have the labelled data's classes
        self.info: Dict[str, Any] = {}

    def setup(self, labelled) -> Dict[str, Any]:
        """Set the unlabelled data up next to the set-up labelled datamodule; returns its split info."""
        dm = self.datamodule
        try:
            dm.setup("fit")
        except DataError as exc:
            raise DataError(f"data.unlabeled: {exc}") from None
        if len(dm.datasets["train"]) == 0:
            raise DataError(f"data.unlabeled: data={self.cfg.name} has no training samples to learn from "
                            f"(root {self.cfg.get('root')}); give it a non-empty source")
        self._refuse_leaks(labelled)
        self.has_labels = dm.class_names == labelled.class_names
        if not self.has_labels and dm.class_names != [UNLABELED_CLASS]:
            log.info("data.unlabeled: its classes (%s) are not the labelled data's: no target accuracy is measured",
                     ", ".join(dm.class_names[:5]))
        self.info = {"dataset": self.cfg.name, "root": self.cfg.get("root"), "ratio": self.ratio,
                     "strong_view": self.strong, "has_labels": self.has_labels,
                     "sizes": {k: len(v) for k, v in dm.datasets.items()},
                     "fingerprint": dm.split_info["fingerprint"]}
        return self.info

    def _refuse_leaks(self, labelled) -> None:
        """Data of the same option and root must never train on (even without labels) a labelled val/test sample."""
        if (self.cfg.name, self.cfg.get("root")) != (labelled.cfg.name, labelled.cfg.get("root")):
            return
        held_out = {(ds.source.origin, int(i)) for split in ("val", "test") for ds in [labelled.datasets[split]]
                    for i in ds.indices}
        train = self.datamodule.datasets["train"]
        leaked = sum((train.source.origin, int(i)) in held_out for i in train.indices)
        if leaked:
            raise ConfigError(f"data.unlabeled: {leaked} of its training samples are labelled val/test samples of "
                              f"data={labelled.cfg.name}; give it the labelled data's split settings (its own "
                              "val_fraction, test_fraction and classes differ)")

    def fingerprint(self, labelled_fingerprint: str) -> str:
        text = f"{labelled_fingerprint}|unlabeled:{self.info['fingerprint']}|ratio={self.ratio}|strong={self.strong}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def join(self, loader: DataLoader, labelled) -> Any:
        """The labelled training ``loader`` and the unlabelled one, batch for batch (or ``loader`` alone at
        data.unlabeled_ratio=0)."""
        if self.ratio == 0:
            return loader
        trainer = getattr(labelled, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        n_labelled = len(labelled.datasets["train"])
        batches = math.ceil(math.ceil(n_labelled / world) / loader.batch_size) if loader.batch_size else len(loader)
        size = self.cfg.batch_size
        split = self.datamodule.datasets["train"]
        prep, augment = self.datamodule.preprocessing, self.datamodule.augment
        strong = prep.transform(train=True, augment="strong") if self.strong else None
        dataset = UnlabeledSplit(split, prep.transform(train=True, augment=augment), strong)
        sampler = CycledSampler(len(dataset), batches * size, self.cfg.seed, world, rank)
        unlabeled = DataLoader(dataset, batch_size=size, sampler=sampler, num_workers=loader.num_workers,
                               collate_fn=loader.collate_fn, worker_init_fn=loader.worker_init_fn,
                               persistent_workers=loader.num_workers > 0, generator=sampler.worker_seeds)
        return CombinedLoader({"labeled": loader, "unlabeled": unlabeled}, mode="min_size")

    def target_metric_names(self) -> tuple:
        return (f"{TARGET_STAGE}acc",) if self.has_labels and len(self.datamodule.datasets["val"]) else ()


class TargetEvaluation(L.Callback):
    """The unlabelled data as the target: its labelled val split each epoch when a monitor names ``target_val/``
    (an oracle), its test split after testing, and the source-to-target feature gap before and after training."""

    def __init__(self, unlabeled: UnlabeledData, labelled):
        self.unlabeled, self.labelled = unlabeled, labelled
        self.monitors: List[str] = []
        self.section: Dict[str, Any] = {}
        self.restored_before: Optional[Dict[str, Any]] = None  # the gap before training, from a resumed checkpoint

    @property
    def oracle(self) -> bool:
        return any(m.startswith(TARGET_STAGE) for m in self.monitors)

    def _accuracy(self, module, split: str) -> Dict[str, float]:
        from sklearn.metrics import f1_score

        out = collect(lambda b: module(b["inputs"]), self.unlabeled.datamodule.eval_loader(split), [module])
        predicted, target = out["outputs"].argmax(-1).numpy(), out["target"].numpy()
        return {"acc": float((predicted == target).mean()) if len(target) else 0.0,
                "f1_macro": float(f1_score(target, predicted, average="macro")) if len(target) else 0.0,
                "samples": int(len(target))}

    def _gap(self, module) -> Dict[str, Any]:
        """MMD^2 and proxy A-distance between the module's features of the source's and the target's test samples
        (the target's training samples where it has no labelled test split)."""
        target_dm = self.unlabeled.datamodule
        target_split = "test" if self.unlabeled.has_labels and len(target_dm.datasets["test"]) else "train"
        sides = []
        for dm, split in ((self.labelled, "test"), (target_dm, target_split)):
            limit = GAP_SAMPLES if len(dm.datasets[split]) > GAP_SAMPLES else None
            loader = dm.eval_loader(split, limit)
            with module.raw_inputs():
                sides.append(collect(lambda b: module.features(b["inputs"]), loader, [module])["outputs"]
                             .double().numpy())
        if min(len(s) for s in sides) < 10:
            return {}
        mmd = mmd2_permutation(sides[0], sides[1], GAP_PERMUTATIONS, seed=0)
        pad = proxy_a_distance(sides[0], sides[1], seed=0)
        return {"mmd2": float(mmd["mmd2"]), "mmd_p_value": float(mmd["p_value"]),
                "proxy_a_distance": float(pad["proxy_a_distance"]), "domain_accuracy": float(pad["domain_accuracy"]),
                "samples": [len(s) for s in sides], "target_split": target_split}

    def state_dict(self) -> Dict[str, Any]:
        """The gap before training goes into checkpoints: a resumed run reports the first start's, not the gap of
        the model it resumes."""
        return {"feature_gap_before": self.section["feature_gap"]["before"]} if self.section else {}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.restored_before = state_dict.get("feature_gap_before")

    def on_fit_start(self, trainer, pl_module) -> None:
        self.monitors = [m for m in (getattr(cb, "monitor", None) for cb in trainer.callbacks) if isinstance(m, str)]
        if self.oracle and not self.unlabeled.target_metric_names():
            raise ConfigError(f"monitor {', '.join(self.monitors)}: data.unlabeled (data={self.unlabeled.cfg.name}) "
                              "has no labelled val split of the labelled data's classes to select on")
        self.section = {"unlabeled": self.unlabeled.info,
                        "selection": {"monitor": trainer.checkpoint_callback.monitor if trainer.checkpoint_callback
                                      else None, "oracle": self.oracle,
                                      "uses_target_labels": self.oracle},
                        "feature_gap": {"before": self.restored_before if self.restored_before is not None
                                                   else self._gap(pl_module)}}

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.oracle and not trainer.sanity_checking:
            pl_module.log(f"{TARGET_STAGE}acc", self._accuracy(pl_module, "val")["acc"])

    def on_test_end(self, trainer, pl_module) -> None:
        if not self.section:  # testing outside fit (tl-eval builds no such callback)
            return
        if self.unlabeled.has_labels and len(self.unlabeled.datamodule.datasets["val"]):
            # reported, never selected on: what hyperparameters may be chosen by (docs/adaptation.md)
            self.section["target_val"] = self._accuracy(pl_module, "val")
        if self.unlabeled.has_labels and len(self.unlabeled.datamodule.datasets["test"]):
            target = self._accuracy(pl_module, "test")
            self.section["target_test"] = target
            trainer.callback_metrics["target_test/acc"] = torch.tensor(target["acc"])
            for logger in trainer.loggers:
                logger.log_metrics({"target_test/acc": target["acc"], "target_test/f1_macro": target["f1_macro"]},
                                   step=trainer.global_step)
        source = trainer.callback_metrics.get("test/acc")
        self.section["source_test"] = {"acc": float(source)} if source is not None else None
        self.section["feature_gap"]["after"] = self._gap(pl_module)

    def summary_sections(self) -> Dict[str, Any]:
        return {"adaptation": self.section or None}

