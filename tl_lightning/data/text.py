"""Text datasets: the shared text datamodule (token cache, length bucketing) and its sources.

``fortunes`` (Debian's fortunes package: one class per topic file, entries between ``%`` lines), ``text_csv``
(CSV / TSV / JSONL with named text, label and optional group columns; one file split by seed, or train/val/test
files), ``text_folder`` (one folder per class of .txt files) and ``synthetic_text`` (for tests). Splits, budget,
class subsets and summary fields are the image datamodules' (``TransferDataModule``); samples are raw strings that
the backbone's ``TextPreprocessing`` tokenises, once per split.
"""

import hashlib
import json
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from tl_lightning.atomic import atomic_torch_save
from tl_lightning.callbacks.misclassified import MisclassifiedExamples
from tl_lightning.data.base import RawData, TransferDataModule, batch_size_for
from tl_lightning.data.groups import group_ids
from tl_lightning.data.image_folder import _class_dirs
from tl_lightning.data.samplers import leave_stop_signals_to_main
from tl_lightning.errors import DataError
from tl_lightning.registry import DATAMODULES
from tl_lightning.tables import read_table, read_text_file

log = logging.getLogger(__name__)
FORTUNES_DIR = "/usr/share/games/fortunes"


class TextSource:
    """Texts with labels (and optional groups); ``name(i)`` says where a text came from (file:line)."""

    def __init__(self, texts: Sequence[str], targets: Sequence[int], origin: str, names: Optional[Sequence[str]] = None,
                 groups: Optional[Sequence[int]] = None):
        self.texts = list(texts)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.origin = origin
        self.names = list(names) if names is not None else None
        if groups is not None:
            self.groups = np.asarray(groups, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def sample(self, i: int) -> str:
        return self.texts[i]

    def name(self, i: int) -> str:
        return self.names[i] if self.names else f"{self.origin}#{i}"

    def content_sizes(self) -> List[int]:
        return [len(t) for t in self.texts]

    def content_keys(self, sizes: Sequence[int], shared_sizes) -> List[Optional[str]]:
        """Identical texts (after stripping) are duplicates; only texts of a shared length are hashed."""
        return [hashlib.sha1(t.encode()).hexdigest() if shared_sizes[n] > 1 else None for t, n in zip(self.texts, sizes)]


def nonempty(texts: List[str], names: List[str], what: str) -> List[int]:
    """Indices of the texts that are not empty or whitespace-only; the others are skipped with a count logged."""
    keep = [k for k, t in enumerate(texts) if t.strip()]
    if len(keep) < len(texts):
        log.warning("%s: skipped %d empty or whitespace-only text(s), e.g. %s", what, len(texts) - len(keep),
                    next(names[k] for k, t in enumerate(texts) if not t.strip()))
    return keep


def keep_nonempty(texts: List[str], labels: List, names: List[str], what: str) -> Tuple[List[str], List, List[str]]:
    keep = nonempty(texts, names, what)
    return [texts[k].strip() for k in keep], [labels[k] for k in keep], [names[k] for k in keep]


def class_names_of(labels: Sequence) -> List[str]:
    """Sorted label values as class names: numerically when every label is an integer."""
    values = sorted({str(v) for v in labels})
    if all(v.lstrip("-").isdigit() for v in values):
        values.sort(key=int)
    return values


class BucketBatchSampler(Sampler):
    """Training batches of similar lengths (less padding), still random: each epoch a permutation from
    (seed, epoch), cut into pools of ``pool`` batches, each pool sorted by length and cut into batches, the batch
    order shuffled. Deterministic per (seed, epoch), and the epoch's random stream is reseeded like
    ``EpochShuffleSampler``'s, so a resumed run continues exactly."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, pool: int = 50):
        self.lengths, self.batch_size, self.seed, self.pool, self.epoch = list(lengths), batch_size, seed, pool, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def batches(self) -> List[List[int]]:
        epoch_seed = self.seed * 100_003 + self.epoch
        gen = torch.Generator().manual_seed(epoch_seed)
        order = torch.randperm(len(self.lengths), generator=gen).tolist()
        chunk, out = self.batch_size * self.pool, []
        for start in range(0, len(order), chunk):
            part = sorted(order[start:start + chunk], key=lambda i: self.lengths[i])
            out += [part[k:k + self.batch_size] for k in range(0, len(part), self.batch_size)]
        return [out[k] for k in torch.randperm(len(out), generator=gen).tolist()]

    def __iter__(self):
        batches = self.batches()
        torch.manual_seed(self.seed * 100_003 + self.epoch + 1)
        return iter(batches)


def _ids_checksum(ids: Sequence[Sequence[int]]) -> str:
    """sha256 of the token cache's id lists (a file whose key is intact but whose ids were changed is rebuilt)."""
    digest = hashlib.sha256()
    for row in ids:
        digest.update(np.asarray(row, dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def _ids_in_range(ids: Sequence[Sequence[int]], vocab: int) -> bool:
    return all(all(isinstance(i, int) and 0 <= i < vocab for i in row) for row in ids)


class TextDataModule(TransferDataModule):
    modality = "text"  # tokenised splits are cached under paths.cache_dir (self.paths), when there is one

    def callbacks(self, layout) -> list:
        return [MisclassifiedExamples(layout.run_dir)]

    def setup(self, stage: Optional[str] = None) -> None:
        if self.datasets:
            return
        super().setup(stage)
        texts = [ds.source.sample(int(i)) for ds in self.datasets.values() for i in ds.indices]
        self.split_info["token_cache"] = self._tokenise(texts)
        self.split_info["tokens_per_text"] = self._length_stats()

    def _tokenise(self, texts: List[str]) -> str:
        """Tokenise every text of the splits once, through ``<cache_dir>/tokens/`` (keyed by the tokenizer, its
        settings and the texts themselves)."""
        prep = self.preprocessing
        key = {"tokenizer": prep.spec.tokenizer, "vocab": len(prep.tokenizer), "spec": repr(prep.spec),
               "texts": hashlib.sha256("\x00".join(texts).encode()).hexdigest()}
        if not self.paths.cache_dir:
            prep.warm(texts)
            return "off"
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        path = os.path.join(self.paths.cache_dir, "tokens", f"{digest}.pt")
        if os.path.isfile(path):
            try:
                blob = torch.load(path, map_location="cpu", weights_only=True)
                if blob.get("key") == key and len(blob["ids"]) == len(texts):
                    if blob.get("checksum") != _ids_checksum(blob["ids"]) or not _ids_in_range(blob["ids"], key["vocab"]):
                        raise ValueError("checksum or token ids do not match")
                    prep.warm(texts, blob["ids"])
                    return "hit"
            except Exception as exc:  # a damaged cache is rebuilt, never used
                log.warning("token cache %s is unreadable or corrupt (%s); rebuilding", path, type(exc).__name__)

        ids = prep.warm(texts)
        atomic_torch_save({"key": key, "ids": ids, "checksum": _ids_checksum(ids)}, path)
        return "miss"

    def _length_stats(self) -> Dict[str, float]:
        lengths = self.lengths("train")
        return {"mean": round(float(np.mean(lengths)), 1), "max": int(np.max(lengths))} if lengths else {}

    def lengths(self, split: str) -> List[int]:
        ds = self.datasets[split]
        return [len(ds.transform(ds.source.sample(int(i)))) for i in ds.indices]

    def labelled_train_loader(self) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        if not self.cfg.get("bucketing", True) or (trainer is not None and trainer.world_size > 1) or \
                self.cfg.get("sampler") == "balanced":
            return super().labelled_train_loader()  # under DDP: Lightning's DistributedSampler, shuffled per epoch
        sampler = BucketBatchSampler(self.lengths("train"), batch_size_for(self.cfg, "train"), self.cfg.seed)
        return DataLoader(self.datasets["train"], batch_sampler=sampler, num_workers=self.cfg.num_workers,
                          persistent_workers=self.cfg.num_workers > 0, collate_fn=self.preprocessing.collate,
                          worker_init_fn=leave_stop_signals_to_main)


def split_entries(text: str) -> List[Tuple[str, int]]:
    """Fortune-file entries (separated by lines holding only %) with the line each starts on."""
    entries, current, start = [], [], 1
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip() == "%":
            entries.append(("\n".join(current), start))
            current, start = [], number + 1
        else:
            current.append(line)
    entries.append(("\n".join(current), start))
    return entries


@DATAMODULES.register()
class FortunesDataModule(TextDataModule):
    """Debian's fortunes: each topic file a class, each entry a sample."""

    name = "fortunes"

    def load(self) -> RawData:
        root = self.cfg.root or FORTUNES_DIR
        if not os.path.isdir(root):
            raise DataError(f"data.root: {root} does not exist; install Debian's fortunes package (apt-get install "
                            "fortunes; make data does it) or give data.root=<folder of fortune files>")
        available = sorted(f for f in os.listdir(root) if os.path.isfile(os.path.join(root, f)) and "." not in f)
        texts, labels, names = [], [], []
        for label, topic in enumerate(self.cfg.topics):
            path = os.path.join(root, topic)
            if not os.path.isfile(path):
                raise DataError(f"data.topics: no fortune file '{topic}' in {root}; available: {', '.join(available)}")
            for entry, line in split_entries(read_text_file(path)):
                texts.append(entry)
                labels.append(label)
                names.append(f"{path}:{line}")
        texts, labels, names = keep_nonempty(texts, labels, names, f"data={self.name}")
        return RawData(train=TextSource(texts, labels, root, names), class_names=list(self.cfg.topics))


@DATAMODULES.register()
class TextFolderDataModule(TextDataModule):
    """root/<class>/<file>.txt: each file one sample of its folder's class."""

    name = "text_folder"

    def load(self) -> RawData:

        root = self.cfg.root
        names_of_classes = _class_dirs(root)
        if len(names_of_classes) < 2:
            raise DataError(f"data.root: {root} has {len(names_of_classes)} class folder(s); text_folder needs at least "
                            f"2 ({root}/<class>/<file>.txt)")
        texts, labels, names = [], [], []
        for label, cls in enumerate(names_of_classes):
            folder = os.path.join(root, cls)
            files = sorted(f for f in os.listdir(folder) if not f.startswith("."))
            for fname in files:
                path = os.path.join(folder, fname)
                if not fname.endswith(".txt"):
                    raise DataError(f"not a .txt file: {path} (text_folder reads <class>/<file>.txt)")
                texts.append(read_text_file(path))
                labels.append(label)
                names.append(path)
            if not files:
                raise DataError(f"class folder {folder} has no .txt files")
        texts, labels, names = keep_nonempty(texts, labels, names, f"data.root={root}")
        return RawData(train=TextSource(texts, labels, root, names), class_names=names_of_classes)


@DATAMODULES.register()
class TextCsvDataModule(TextDataModule):
    """A table of texts: one file split by seed (data.path), or train/val/test files (data.train_path, ...)."""

    name = "text_csv"

    def _source(self, path: str, class_names: Optional[List[str]], what: str):
        cfg = self.cfg
        try:
            table = read_table(path, [cfg.text_column, cfg.label_column, cfg.group_column])
        except DataError as exc:
            raise DataError(f"{exc}" + (" (set data.text_column / data.label_column / data.group_column)"
                                        if "no column" in str(exc) else "")) from None
        all_labels = [v.strip() for v in table[cfg.label_column]]
        unlabelled = [k for k, v in enumerate(all_labels) if not v]
        if unlabelled:
            log.warning("%s: skipped %d row(s) with an empty '%s' (data.label_column), e.g. %s", path,
                        len(unlabelled), cfg.label_column, table["_where"][unlabelled[0]])
        keep = [k for k in nonempty(table[cfg.text_column], table["_where"], path) if all_labels[k]]
        texts = [table[cfg.text_column][k].strip() for k in keep]
        labels = [all_labels[k] for k in keep]
        names = [table["_where"][k] for k in keep]
        if class_names is None:
            class_names = class_names_of([v for v in all_labels if v])  # with the labels of empty texts
            if len(class_names) < 2:
                raise DataError(f"{path}: column '{cfg.label_column}' holds {len(class_names)} class(es) "
                                f"({', '.join(class_names) or 'none'}); a classifier needs at least 2")
        index = {name: k for k, name in enumerate(class_names)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise DataError(f"{path}: labels {', '.join(unknown[:5])} of the {what} file are not classes of the "
                            f"training file ({', '.join(class_names)})")
        targets = [index[v] for v in labels]
        counts = np.bincount(targets, minlength=len(class_names))
        if what == "train" and (counts == 0).any():
            empty = [class_names[k] for k in np.flatnonzero(counts == 0)]
            raise DataError(f"{path}: class(es) {', '.join(empty)} have only empty texts")
        groups = None
        if cfg.group_column:
            values = [(table[cfg.group_column][k] or "").strip() for k in keep]
            empty = [names[k] for k, v in enumerate(values) if not v]
            if empty:
                raise DataError(f"{path}: {len(empty)} of {len(values)} texts have an empty '{cfg.group_column}' "
                                f"(data.group_column), e.g. {empty[0]}; every text needs a group")
            self.group_names, groups = group_ids(values, self.group_names if what != "train" else None, path,
                                                 cfg.group_column)
        return TextSource(texts, targets, path, names, groups), class_names

    def load(self) -> RawData:
        cfg = self.cfg
        self.group_names = []
        first = cfg.path or cfg.train_path
        train, names = self._source(first, None, "train")
        parts = {}
        for split in ("val", "test"):
            path = cfg.get(f"{split}_path")
            parts[split] = self._source(path, names, split)[0] if path else None
        return RawData(train=train, val=parts["val"], test=parts["test"], class_names=names)


WORDS = ("the a of to and in is it that was for on are with as his they be at one have this from or had by hot "
         "but some what there we can out other were all your when up use word how said an each she which do their "
         "time if will way about many then them would write like so these her long make thing see him two has look").split()
TOPICS = ("cpu kernel compiler bug memory disk network program", "goal match team score coach league season player",
          "bread cheese soup oven recipe garlic butter salad", "court judge law trial verdict lawyer appeal contract",
          "vote senate party election policy minister campaign tax", "atom energy theory planet cell experiment light gene")


@DATAMODULES.register()
class SyntheticTextDataModule(TextDataModule):
    """Seeded sentences: filler words with a few words of the class's topic. For tests and benchmarks."""

    name = "synthetic_text"

    def load(self) -> RawData:
        cfg = self.cfg
        if not 2 <= cfg.num_classes <= len(TOPICS):
            raise DataError(f"data.num_classes={cfg.num_classes}: synthetic_text has 2..{len(TOPICS)} classes")
        rng = np.random.default_rng(cfg.seed)
        texts, labels = [], []
        for c in range(cfg.num_classes):
            topic = TOPICS[c].split()
            for _ in range(cfg.per_class):
                n = int(rng.integers(4, 40))
                words = list(rng.choice(WORDS, size=n)) + list(rng.choice(topic, size=max(1, n // 6)))
                rng.shuffle(words)
                texts.append(" ".join(words))
                labels.append(c)
        names = [TOPICS[c].split()[0] for c in range(cfg.num_classes)]
        return RawData(train=TextSource(texts, labels, "synthetic_text"), class_names=names)
