"""``data=hf``: a Hugging Face ``datasets`` dataset, from the Hub or from disk.

``data.path`` is a Hub id (``beans``, ``user/name``; ``data.config`` picks one of its configurations), a folder
written by ``save_to_disk`` (``load_from_disk``), a folder of data files (Parquet, CSV, JSON, or an imagefolder:
``load_dataset`` picks the builder from the files), or one data file (``.parquet``, ``.csv``, ``.tsv``, ``.json``,
``.jsonl``, ``.arrow``). The dataset's own ``train`` / ``validation`` / ``test`` splits are used when it has them
(a split whose labels are all missing, as in benchmarks that hide their test labels, is left out and drawn from
the training pool instead); everything else (budget, long tail, class subsets, groups, fingerprints) is the
shared ``TransferDataModule``'s.

Images (``data.image_column``, a ``datasets.Image`` column) are decoded one sample at a time, when a loader asks;
texts (``data.text_column``) go through the backbone's tokenizer and the token cache of ``TextDataModule``. Labels
come from ``data.label_column``: a ``ClassLabel`` gives the class names, other values become classes in sorted
order (numerically when every value is an integer).

Offline (huggingface.co unreachable, or HF_HUB_OFFLINE=1 / TL_OFFLINE=1), a Hub id is read from the ``datasets``
cache, where ``load_dataset`` (or ``tl-prefetch data=hf data.path=<id>``) left it on a machine with internet; an id
that is not there is one line saying so, without waiting on the network. Datasets that need their own loading
script are refused by ``datasets`` itself (it runs no dataset code since version 4).
"""

import contextlib
import logging
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from tl_lightning.backbones.weights import HF_URL, host_reachable
from tl_lightning.data.base import RawData, TransferDataModule
from tl_lightning.data.groups import group_ids
from tl_lightning.data.text import TextDataModule, TextSource, class_names_of
from tl_lightning.errors import DataError
from tl_lightning.registry import DATAMODULES

log = logging.getLogger(__name__)
VAL_SPLITS = ("validation", "valid", "val", "dev")
BUILDERS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".arrow": "arrow"}


def prefetch_hint(cfg) -> str:
    extra = "".join(f" data.{k}={cfg[k]}" for k in ("config", "revision") if cfg.get(k))
    return f"on a machine with internet run: tl-prefetch data=hf data.path={cfg.path}{extra}"


def is_local(path: str) -> bool:
    return os.path.exists(path)


def cached_hub_dir(cfg) -> str:
    """Where ``datasets`` keeps the prepared Arrow files of Hub id ``cfg.path`` (its cache layout:
    ``<namespace>___<name>/<config>/<version>/<commit>/``)."""
    import datasets
    from datasets.naming import camelcase_to_snakecase

    parts = cfg.path.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    return os.path.join(os.path.expanduser(str(cfg.get("cache_dir") or datasets.config.HF_DATASETS_CACHE)),
                        "___".join(parts))


@contextlib.contextmanager
def hub_offline(offline: bool):
    """``datasets`` in offline mode for the duration (it reads its flag at import; set here it answers from the
    cache instead of trying the network)."""
    import datasets

    before = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = before or offline
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = before


def open_dataset(cfg, online: Optional[bool] = None):
    """The dataset (a ``DatasetDict``, or one ``Dataset``) that ``cfg.path`` names. ``online``: whether the Hub
    may be asked (None: probe huggingface.co for a few seconds)."""
    import datasets

    path = cfg.path
    quiet, bars = datasets.utils.logging.get_verbosity(), datasets.utils.logging.is_progress_bar_enabled()
    datasets.utils.logging.set_verbosity_error()  # its "Generating train split" lines and cache notes
    datasets.utils.logging.disable_progress_bar()
    try:
        if is_local(path):
            return _open_local(cfg)
        if online is None:
            online = host_reachable(HF_URL)  # False at once under HF_HUB_OFFLINE / TL_OFFLINE
        if not online and not os.path.isdir(cached_hub_dir(cfg)):
            raise DataError(f"data.path={path}: the Hugging Face dataset is not in the datasets cache "
                            f"({cached_hub_dir(cfg)}) and huggingface.co is unreachable; {prefetch_hint(cfg)} "
                            "and share that cache (HF_DATASETS_CACHE) with this machine")
        try:
            with hub_offline(not online):
                return datasets.load_dataset(path, name=cfg.get("config"), revision=cfg.get("revision"),
                                             cache_dir=cfg.get("cache_dir"))
        except (ConnectionError, FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
            raise DataError(f"data.path={path}: cannot load the Hugging Face dataset "
                            f"({first_line(exc)})" + ("" if online else f"; {prefetch_hint(cfg)}")) from None
    finally:
        datasets.utils.logging.set_verbosity(quiet)
        if bars:
            datasets.utils.logging.enable_progress_bar()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"


def _open_local(cfg):
    import datasets

    path, cache = cfg.path, cfg.get("cache_dir")
    try:
        if os.path.isdir(path):
            if any(os.path.isfile(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json")):
                return datasets.load_from_disk(path)  # written by save_to_disk
            return datasets.load_dataset(path, name=cfg.get("config"), cache_dir=cache)
        ext = os.path.splitext(path)[1].lower()
        extra = {"sep": "\t"} if ext == ".tsv" else {}
        return datasets.load_dataset(BUILDERS[ext], data_files={"train": path}, cache_dir=cache, **extra)
    except (FileNotFoundError, ValueError, OSError, datasets.exceptions.DatasetGenerationError) as exc:
        raise DataError(f"data.path={path}: cannot load it with datasets ({first_line(exc)})") from None


def splits_of(dataset, path: str) -> Tuple[object, Optional[object], Optional[object]]:
    """(train, val, test) of a DatasetDict (val and test may be None), or (dataset, None, None) for one split."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        return dataset, None, None
    names = list(dataset.keys())
    if "train" not in dataset:
        raise DataError(f"data.path={path}: no 'train' split (splits: {', '.join(names)}); the harness trains on "
                        "'train' and uses 'validation' and 'test' when present")
    val = next((dataset[k] for k in VAL_SPLITS if k in dataset), None)
    return dataset["train"], val, dataset["test"] if "test" in dataset else None


def column(ds, name: str, key: str, path: str) -> list:
    if name not in ds.column_names:
        raise DataError(f"data.path={path}: no column '{name}' (data.{key}); columns: {', '.join(ds.column_names)}")
    return ds.data.column(name).to_pylist()  # from Arrow directly: no image is decoded


def label_values(ds, key_column: str, path: str):
    """The label column's values and, for a ClassLabel, its names (missing labels: -1 / None)."""
    import datasets

    values = column(ds, key_column, "label_column", path)
    feature = ds.features[key_column]
    if isinstance(feature, datasets.ClassLabel):
        return [-1 if v is None else int(v) for v in values], list(feature.names)
    if any(isinstance(v, (list, dict)) for v in values[:100]):
        raise DataError(f"data.path={path}: column '{key_column}' holds lists (multi-label); data=hf takes one "
                        "label per sample")
    return [None if v is None or str(v).strip() == "" else str(v).strip() for v in values], None


class HFImageSource:
    """The labelled rows of one split of a ``datasets`` dataset (row ids into it, targets), their images decoded one
    at a time from the Arrow files (``sample(i)``: a PIL image in RGB)."""

    decodes_files = True  # encoded images (data.cache=auto caches them decoded)

    def __init__(self, ds, image_column: str, rows: np.ndarray, targets: np.ndarray, origin: str):
        import datasets

        feature = ds.features.get(image_column)
        if not isinstance(feature, datasets.Image):
            found = type(feature).__name__ if feature is not None else "no such column"
            raise DataError(f"{origin}: column '{image_column}' (data.image_column) is not a column of images "
                            f"({found}); columns: {', '.join(ds.column_names)}; set data.text_column for texts")
        self.ds, self.rows, self.targets, self.origin = ds.select_columns([image_column]), rows, targets, origin
        self.image_column = image_column

    def __len__(self) -> int:
        return len(self.targets)

    def name(self, i: int) -> str:
        return f"{self.origin}#{int(self.rows[i])}"

    def sample(self, i: int):
        try:
            return self.ds[int(self.rows[i])][self.image_column].convert("RGB")
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"cannot read image {self.name(i)}: {first_line(exc)}") from None

    def _encoded(self) -> list:
        """Each row's stored image: {'bytes': ..., 'path': ...}, not decoded."""
        import datasets

        raw = self.ds.cast_column(self.image_column, datasets.Image(decode=False))
        stored = raw.data.column(self.image_column).to_pylist()
        return [stored[int(r)] for r in self.rows]

    def content_sizes(self) -> List[int]:
        self._stored = self._encoded()
        return [len(s["bytes"]) if s.get("bytes") else os.path.getsize(s["path"]) for s in self._stored]

    def content_keys(self, sizes: Sequence[int], shared_sizes) -> List[Optional[str]]:
        """A digest of each image's encoded bytes where its size is shared (exact duplicates across splits)."""
        import hashlib

        keys: List[Optional[str]] = []
        for stored, size in zip(self._stored, sizes):
            if shared_sizes[size] < 2:
                keys.append(None)
                continue
            data = stored.get("bytes")
            if not data:
                with open(stored["path"], "rb") as fh:
                    data = fh.read()
            keys.append(f"{size}:{hashlib.sha1(data).hexdigest()}")
        del self._stored
        return keys

    def verify(self, indices: Sequence[int]) -> None:
        """Decode each image the run uses once, so a corrupt one fails at start-up, not mid-epoch."""
        for i in indices:
            self.sample(int(i))


class HFSource:
    """Reads one ``data=hf`` dataset into sources of the shared datamodule (images or texts)."""

    def __init__(self, cfg, modality: str):
        self.cfg, self.modality = cfg, modality

    def load(self, datamodule) -> RawData:
        cfg = self.cfg
        train, val, test = splits_of(open_dataset(cfg), cfg.path)
        if datamodule.as_unlabeled and cfg.label_column not in train.column_names:
            return self._unlabelled_pool(train)
        values, names = label_values(train, cfg.label_column, cfg.path)
        if names is None:
            names = class_names_of([v for v in values if v is not None])
        if len(names) < 2:
            raise DataError(f"data.path={cfg.path}: column '{cfg.label_column}' (data.label_column) holds "
                            f"{len(names)} class(es); a classifier needs at least 2")
        parts = {}
        group_names = None
        for split, ds in (("train", train), ("val", val), ("test", test)):
            if ds is None:
                parts[split] = None
                continue
            source = self._source(ds, split, names)
            if source is None:
                parts[split] = None
                continue
            if cfg.group_column:
                values_g = [str(v).strip() if v is not None else "" for v in
                            np.asarray(column(ds, cfg.group_column, "group_column", cfg.path), dtype=object)[source.rows]]
                if any(not v for v in values_g):
                    raise DataError(f"data.path={cfg.path} ({split}): {sum(not v for v in values_g)} samples have an "
                                    f"empty '{cfg.group_column}' (data.group_column); every sample needs a group")
                group_names, source.groups = group_ids(values_g, group_names, f"data.path={cfg.path}",
                                                       cfg.group_column)
            parts[split] = source
        datamodule.group_names = group_names or []
        return RawData(train=parts["train"], val=parts["val"], test=parts["test"], class_names=names)

    def _unlabelled_pool(self, train) -> RawData:
        """As data.unlabeled, a dataset without its label column: its training split as one pool of samples."""
        from tl_lightning.data.unlabeled import UNLABELED_CLASS

        rows = np.arange(len(train), dtype=np.int64)
        source = self._make_source(train, rows, np.zeros(len(train), dtype=np.int64), f"{self.cfg.path}[train]")
        return RawData(train=source, class_names=[UNLABELED_CLASS])

    def _source(self, ds, split: str, names: List[str]):
        """The labelled rows of one split as a source; None for a val/test split without labels."""
        cfg = self.cfg
        origin = f"{cfg.path}[{split}]"
        values, own_names = label_values(ds, cfg.label_column, cfg.path)
        if own_names is not None and own_names != names:
            raise DataError(f"{origin}: its classes ({', '.join(own_names[:6])}) differ from the training split's "
                            f"({', '.join(names[:6])})")
        labelled = [k for k, v in enumerate(values) if v is not None and v != -1]
        if not labelled:
            if split == "train":
                raise DataError(f"{origin}: no sample has a label in '{cfg.label_column}' (data.label_column)")
            log.warning("%s has no labels (a benchmark's hidden test labels?): the %s set is drawn from the training "
                        "split instead", origin, split)
            return None
        if len(labelled) < len(values):
            log.warning("%s: skipped %d sample(s) without a label", origin, len(values) - len(labelled))
        if own_names is not None:
            targets = [values[k] for k in labelled]
        else:
            index = {name: c for c, name in enumerate(names)}
            unknown = sorted({values[k] for k in labelled} - set(index))
            if unknown:
                raise DataError(f"{origin}: labels {', '.join(unknown[:5])} are not classes of the training split "
                                f"({', '.join(names[:8])})")
            targets = [index[values[k]] for k in labelled]
        return self._make_source(ds, np.asarray(labelled, dtype=np.int64), np.asarray(targets, dtype=np.int64), origin)

    def _make_source(self, ds, rows: np.ndarray, targets: np.ndarray, origin: str):
        """The source of these rows of ``ds``: their images, or their non-empty texts (the others skipped with a
        count); ``source.rows`` maps the source's samples back to rows of ``ds``."""
        cfg = self.cfg
        if self.modality == "image":
            return HFImageSource(ds, cfg.image_column or "image", rows, targets, origin)
        texts = column(ds, cfg.text_column, "text_column", cfg.path)
        keep = [k for k, r in enumerate(rows) if isinstance(texts[r], str) and texts[r].strip()]
        if len(keep) < len(rows):
            log.warning("%s: skipped %d empty or missing text(s)", origin, len(rows) - len(keep))
        rows, targets = rows[keep], targets[keep]
        source = TextSource([texts[r].strip() for r in rows], targets, origin, [f"{origin}#{r}" for r in rows])
        source.rows = rows
        return source


class HFImageDataModule(TransferDataModule):
    name = "hf"

    def load(self) -> RawData:
        return HFSource(self.cfg, "image").load(self)


class HFTextDataModule(TextDataModule):
    name = "hf"

    def load(self) -> RawData:
        return HFSource(self.cfg, "text").load(self)


@DATAMODULES.register("hf")
def hf_datamodule(cfg, preprocessing, paths=None):
    """Images or texts, as data.text_column says (the config check reads the same: HFDataConf.modality)."""
    from tl_lightning.context import DEFAULT_PATHS

    cls = HFTextDataModule if cfg.get("text_column") else HFImageDataModule
    return cls(cfg, preprocessing, paths or DEFAULT_PATHS)


def prefetch(cfg) -> str:
    """``tl-prefetch data=hf data.path=<id>``: download the dataset into the datasets cache; one line on what is
    there."""
    if is_local(cfg.path):
        return f"data.path={cfg.path} is a local dataset: nothing to fetch"
    if not host_reachable(HF_URL):
        if os.path.isdir(cached_hub_dir(cfg)):
            return f"cached: dataset {cfg.path} ({cached_hub_dir(cfg)}); huggingface.co is unreachable, not updated"
        raise DataError(f"data.path={cfg.path}: huggingface.co is unreachable from this machine (offline?); run "
                        "tl-prefetch where there is internet and share the datasets cache (HF_DATASETS_CACHE)")
    dataset = open_dataset(cfg, online=True)
    sizes = {k: len(v) for k, v in dataset.items()} if hasattr(dataset, "items") else {"train": len(dataset)}
    return f"cached: dataset {cfg.path} ({', '.join(f'{k} {n:,}' for k, n in sizes.items())}) in {cached_hub_dir(cfg)}"


hf_datamodule.prefetch = prefetch
