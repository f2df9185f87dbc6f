"""Seeded, stratified splits and the labeled budget."""

from typing import List, Optional, Sequence, Tuple

import numpy as np
from sklearn.model_selection import train_test_split

from tl_lightning.errors import DataError


def stratified_split(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int, what: str,
                     class_names: Sequence[str] = ()) -> Tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (rest, held_out) with ``fraction`` held out in every class."""
    counts = np.bincount(labels, minlength=len(class_names))
    present = counts[counts > 0]
    n_held = int(np.ceil(fraction * len(indices)))
    if len(present) and (present.min() < 2 or n_held < len(present) or len(indices) - n_held < len(present)):
        c = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
        name = class_names[c] if c < len(class_names) else str(c)
        need = max(2, int(np.ceil(1 / fraction)))
        raise DataError(f"cannot split off the {what} set ({fraction:.0%} of each class): class '{name}' has "
                        f"{counts[c]} sample(s) ({len(present)} classes, {len(indices)} samples in all); about {need} "
                        f"per class are needed; add samples, change data.{what}_fraction, or leave the class out with "
                        "data.classes")
    try:
        rest, held = train_test_split(indices, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError as exc:
        raise DataError(f"cannot split off the {what} set (fraction {fraction}): {exc}") from None
    return np.sort(rest), np.sort(held)


def fold_split(indices: np.ndarray, labels: np.ndarray, k: int, fold: int, seed: int,
               class_names: Sequence[str] = ()) -> Tuple[np.ndarray, np.ndarray]:
    """(the other folds, fold ``fold``) of a seeded, stratified partition of ``indices`` into ``k`` folds."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels, minlength=len(class_names))
    present = counts[counts > 0]
    if len(present) and present.min() < k:
        c = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
        name = class_names[c] if c < len(class_names) else str(c)
        raise DataError(f"data.folds={k}: class '{name}' has {counts[c]} sample(s) in the training pool, fewer than the "
                        f"folds; use data.folds<={counts[c]} or leave the class out with data.classes")
    parts = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(indices, labels))
    rest, held = parts[fold]
    return np.sort(indices[rest]), np.sort(indices[held])


def per_class_subset(indices: np.ndarray, labels: np.ndarray, per_class, seed: int,
                     class_names: Sequence[str], what: str, strict: bool) -> np.ndarray:
    """Draw ``per_class`` indices of each class by seed (an int, or one count per class).

    strict: a class with fewer samples is an error (the labeled budget); otherwise the
    class keeps all it has (a cap on evaluation sets).
    """
    rng = np.random.default_rng(seed)
    wanted = [per_class] * len(class_names) if np.isscalar(per_class) else list(per_class)
    chosen: List[np.ndarray] = []
    for c, name in enumerate(class_names):
        members = indices[labels == c]
        if len(members) < wanted[c]:
            if strict:
                asked = f"data.{what}={per_class}" if np.isscalar(per_class) else \
                    f"data.{what} gives class '{name}' {wanted[c]} samples,"
                raise DataError(f"{asked} but class '{name}' has only {len(members)} training samples (after the val "
                                f"split); use at most {len(members)}")
            chosen.append(members)
            continue
        chosen.append(rng.choice(members, size=wanted[c], replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)


def label_map_for(classes: Optional[Sequence], class_names: Sequence[str],
                  origin: str) -> Tuple[np.ndarray, List[str], List[int]]:
    """Map original labels to 0..k-1 for the kept classes (ids or names); -1 marks dropped ones."""
    n = len(class_names)
    if classes is None:
        return np.arange(n), list(class_names), list(range(n))
    kept: List[int] = []
    for c in classes:
        if isinstance(c, str) and not c.lstrip("-").isdigit():
            if c not in class_names:
                raise DataError(f"data.classes: '{c}' is not a class of {origin}; valid: {', '.join(class_names)}")
            kept.append(list(class_names).index(c))
        else:
            c = int(c)
            if not 0 <= c < n:
                raise DataError(f"data.classes: {c} is out of range for {origin}; valid ids 0..{n - 1}")
            kept.append(c)
    repeated = sorted({class_names[k] for k in kept if kept.count(k) > 1})
    if repeated:
        raise DataError(f"data.classes names {', '.join(repr(r) for r in repeated)} more than once "
                        f"(data.classes={list(classes)}); list each class once")
    if len(kept) < 2:
        raise DataError(f"data.classes must name at least 2 distinct classes, got {list(classes)}")
    mapping = np.full(n, -1, dtype=np.int64)
    mapping[kept] = np.arange(len(kept))
    return mapping, [class_names[k] for k in kept], kept


def check_labels(targets: np.ndarray, num_classes: int, origin: str) -> None:
    if len(targets) == 0:
        raise DataError(f"{origin}: no samples")
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise DataError(f"{origin}: label {bad} is out of range; valid labels are 0..{num_classes - 1}")


def fingerprint(*arrays: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:12]


def duplicate_free(sources: Sequence, log) -> Tuple[List[Optional[np.ndarray]], dict]:
    """Exact duplicates (same bytes) across and within sources with ``content_keys`` (files): one copy is kept,
    the first in the order test, val, train, so no sample sits in two splits. Copies under different labels are
    all dropped (their label is ambiguous). Returns per source a mask of samples to keep (None: nothing to
    check) and a summary for summary.json."""
    masks: List[Optional[np.ndarray]] = [None] * len(sources)
    first: dict = {}  # key -> (source position, index, label)
    conflicting: set = set()
    removed, examples = 0, []
    from collections import Counter

    checkable = [k for k in range(len(sources)) if sources[k] is not None and hasattr(sources[k], "content_keys")]
    per_source = {k: sources[k].content_sizes() for k in checkable}
    sizes = Counter(size for k in checkable for size in per_source[k])
    for k in sorted(checkable, reverse=True):  # test, val, train: the first copy met is kept
        src = sources[k]
        masks[k] = np.ones(len(src), dtype=bool)
        for i, key in enumerate(src.content_keys(per_source[k], sizes)):
            if key is None:
                continue
            if key not in first:
                first[key] = (k, i, int(src.targets[i]))
                continue
            masks[k][i] = False
            removed += 1
            fk, fi, label = first[key]
            if label != int(src.targets[i]):
                conflicting.add(key)
            if len(examples) < 3:
                examples.append(f"{src.name(i)} = {sources[fk].name(fi)}")
    for key in conflicting:  # drop the kept copy too
        fk, fi, _ = first[key]
        masks[fk][fi] = False
        removed += 1
    info = {"removed": removed, "conflicting_labels": len(conflicting), "examples": examples}
    if removed:
        log.warning("%d exact duplicate sample(s) dropped (%d with conflicting labels: all their copies), e.g. %s",
                    removed, len(conflicting), "; ".join(examples))
    return masks, info


def long_tail_budget(per_class: int, num_classes: int, ratio: float, order: str, seed: int) -> List[int]:
    """Exponential profile: the class of rank r gets ``per_class * ratio ** (-r / (C - 1))`` (at least 1)."""
    ranks = np.arange(num_classes) if order == "fixed" else np.argsort(np.random.default_rng(seed + 5).permutation(num_classes))
    denominator = max(1, num_classes - 1)
    return [max(1, int(round(per_class * ratio ** (-float(r) / denominator)))) for r in ranks]
