"""Run a checkpoint on new inputs: a folder (searched recursively), one file, a glob, or (text models) a CSV,
TSV or JSON Lines file. One CSV row per input: the predicted label and its probability, the top-k labels and
probabilities, and, for an input that could not be read, the reason (the others are still predicted)."""

import csv
import functools
import glob
import io
import logging
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from tl_lightning.atomic import atomic_write
from tl_lightning.batch import sample, to_device
from tl_lightning.deploy.tta import with_tta
from tl_lightning.errors import ConfigError, DataError
from tl_lightning.inference import InferenceModel
from tl_lightning.tables import read_table, read_text_file

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")


def read_image(path: str):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def read_text(path: str) -> str:

    return nonempty_text(read_text_file(path))


def gather_inputs(spec: str, modality: str, text_column: str = "text") -> List[Tuple[str, Callable[[], Any]]]:
    """(name, reader) of every input ``spec`` names; a reader returns the raw sample or raises."""
    suffixes = IMAGE_SUFFIXES if modality == "image" else (".txt",)
    reader = read_image if modality == "image" else read_text
    if os.path.isdir(spec):
        paths = sorted(os.path.join(d, f) for d, _, files in os.walk(spec) for f in files if f.lower().endswith(suffixes))
        if not paths:
            raise DataError(f"input: {spec} holds no {modality} files (looked for {', '.join(suffixes)}, in every "
                            "subfolder)")
    elif os.path.isfile(spec):
        if modality == "text" and spec.lower().endswith(TABLE_SUFFIXES):
            return table_rows(spec, text_column)
        paths = [spec]
    elif glob.has_magic(spec):
        matched = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        if not matched:
            raise DataError(f"input: the pattern {spec} matches no file")
        # as in a folder, only files of the model's kind: a text model never reads a binary or system file as text
        paths = [p for p in matched if p.lower().endswith(suffixes)]
        if not paths:
            raise DataError(f"input: the pattern {spec} matches {len(matched)} file(s), none a {modality} file "
                            f"({', '.join(suffixes)}; e.g. {matched[0]})")
        if len(paths) < len(matched):
            log.warning("input: %d file(s) matched by %s are not %s files (%s) and were left out, e.g. %s",
                        len(matched) - len(paths), spec, modality, ", ".join(suffixes),
                        next(p for p in matched if not p.lower().endswith(suffixes)))
    else:
        raise ConfigError(f"input: no such file or folder: {spec} (a folder, a file, a glob such as 'imgs/*.png'"
                          + (", or a .csv/.tsv/.jsonl of texts" if modality == "text" else "") + ")")
    return [(p, functools.partial(reader, p)) for p in paths]  # picklable: worker processes may be spawned


def table_rows(path: str, column: str) -> List[Tuple[str, Callable[[], Any]]]:

    try:
        table = read_table(path, [column])
    except DataError as exc:
        raise DataError(f"input: {exc} (set text_column=<column>)") from None
    if not table[column]:
        raise DataError(f"input: {path} has no rows")
    return [(where, functools.partial(nonempty_text, text)) for where, text in zip(table["_where"], table[column])]


def nonempty_text(text: str) -> str:
    if not text.strip():
        raise DataError("the text is empty")
    return text


def printable(text: str) -> str:
    """An error as a CSV cell holds it: control characters (a file's raw bytes in an exception) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Inputs(Dataset):
    """Each item: the sample in the batch shape, or the reason it could not be read."""

    def __init__(self, items: Sequence[Tuple[str, Callable[[], Any]]], transform):
        self.items, self.transform = list(items), transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> Dict[str, Any]:
        try:
            return sample(self.transform(self.items[k][1]()), -1, k)
        except Exception as exc:  # unreadable, truncated, not an image, not UTF-8: listed, not fatal
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return {"index": k, "error": printable(f"{type(exc).__name__}: {text}")[:300]}


def collate_with_errors(collate: Optional[Callable]):
    def fn(items: List[Dict[str, Any]]):
        good = [it for it in items if "error" not in it]
        bad = [(it["index"], it["error"]) for it in items if "error" in it]
        return ((collate or default_collate)(good) if good else None), bad

    return fn


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but torch sees no GPU here; use device=auto or device=cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: '{name}' is not a device; valid: auto, cpu, cuda, cuda:<n>") from None


def predict(model: InferenceModel, spec: str, output: str, top_k: int = 3, batch_size: int = 64,
            num_workers: int = 0, device: str = "auto", text_column: str = "text",
            progress: bool = True, tta: str = "none") -> Dict[str, Any]:
    """Write the predictions CSV; returns counts. No readable input at all is an error (nothing written).
    ``tta``: none, or the views whose probabilities are averaged (tl_lightning/deploy/tta.py)."""
    from tqdm import tqdm

    items = gather_inputs(spec, model.preprocessing.modality, text_column)
    target = os.path.realpath(output)
    if any(os.path.realpath(name.rsplit(":", 1)[0]) == target or os.path.realpath(name) == target for name, _ in items):
        raise ConfigError(f"output={output} is one of the inputs this command reads; write to another file")
    net = with_tta(model, tta, model.preprocessing.modality)
    dev = pick_device(device)
    model.to(dev)
    k = max(1, min(top_k, len(model.class_names)))
    # one batch has nothing to overlap: workers would only add their start-up
    workers = num_workers if len(items) > batch_size else 0
    loader = DataLoader(Inputs(items, model.preprocessing.transform(train=False)), batch_size=batch_size,
                        shuffle=False, num_workers=workers,
                        collate_fn=collate_with_errors(model.preprocessing.collate))
    rows: Dict[int, List[Any]] = {}
    with torch.inference_mode():
        # disable=None: tqdm draws its bar on a terminal only (in a log it would be carriage-return frames)
        for batch, errors in tqdm(loader, desc="predict", unit="batch", disable=None if progress else True):
            for index, error in errors:
                rows[index] = [items[index][0], "", "", *([""] * (2 * k)), error]
            if batch is None:
                continue
            probs = torch.softmax(net(to_device(batch, dev)["inputs"]).float(), dim=-1).cpu()
            top_p, top_i = probs.topk(k, dim=-1)
            for j, index in enumerate(batch["index"].tolist()):
                tops = [v for c, p in zip(top_i[j].tolist(), top_p[j].tolist()) for v in (model.class_names[c], f"{p:.6f}")]
                rows[index] = [items[index][0], tops[0], tops[1], *tops, ""]
    failed = sum(1 for r in rows.values() if r[-1])
    if failed == len(items):
        first = next(iter(rows.values()))
        raise DataError(f"input: none of the {len(items)} input(s) could be read (first: {first[0]}: {first[-1]})")
    header = ["input", "predicted", "probability"] + [f"top{i}_{w}" for i in range(1, k + 1) for w in ("label", "prob")]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header + ["error"])
    writer.writerows(rows[i] for i in range(len(items)))
    atomic_write(output, buffer.getvalue())
    return {"inputs": len(items), "predicted": len(items) - failed, "unreadable": failed, "output": output,
            "device": str(dev)}
