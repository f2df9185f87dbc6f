"""Group (slice) labels from metadata: a column of a text table (``data.group_column``) or, for
``data=image_folder``, a CSV file (``data.groups_csv``) with one row per image.

The CSV names each image in ``data.groups_key_column`` (default ``path``): its path relative to ``data.root``
(``<class>/<file>``, or ``train/<class>/<file>`` with split folders), or only its file name when no value of
the column holds a ``/`` (then file names must be unique). Every image needs a row with a non-empty group;
extra rows (images not in the dataset) are ignored. Group ids follow the sorted group names of the training
split; a group seen only in val/test has no id (-1: counted by no group metric).
"""

import csv
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tl_lightning.errors import DataError

log = logging.getLogger(__name__)


def read_groups_csv(path: str, key_column: str, group_column: str) -> Dict[str, str]:
    """``{image key: group}`` from the metadata file; one line for a missing file or column, or a key listed
    twice with different groups."""
    if not os.path.isfile(path):
        raise DataError(f"data.groups_csv: no such file: {path}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        dialect = csv.excel_tab if path.endswith((".tsv", ".tab")) else csv.excel
        reader = csv.DictReader(fh, dialect=dialect)
        columns = reader.fieldnames or []
        for column, key in ((key_column, "data.groups_key_column"), (group_column, "data.group_column")):
            if column not in columns:
                raise DataError(f"{path}: no column '{column}' ({key}); its columns: {', '.join(columns) or '(none)'}")
        table: Dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            key = (row[key_column] or "").strip().replace("\\", "/")
            key = key[2:] if key.startswith("./") else key
            group = (row[group_column] or "").strip()
            if not key:
                continue
            if key in table and table[key] != group:
                raise DataError(f"{path}:{line}: '{key}' is listed twice, with groups '{table[key]}' and '{group}'")
            table[key] = group
    return table


def groups_of_files(paths: Sequence[str], root: str, table: Dict[str, str], where: str) -> List[str]:
    """The group of each image (its key: path relative to root, or file name). Images without a row, or
    with an empty group: one line with how many and one example."""
    by_name = not any("/" in key for key in table)
    if by_name:
        names = [os.path.basename(p) for p in paths]
        seen: Dict[str, str] = {}
        for name, path in zip(names, paths):
            if name in seen:
                raise DataError(f"{where}: its keys are file names, but '{name}' names two images ({seen[name]} and "
                                f"{path}); give paths relative to data.root ({os.path.relpath(path, root)})")
            seen[name] = path
        keys = names
    else:
        keys = [os.path.relpath(p, root).replace(os.sep, "/") for p in paths]
    values = [table.get(k, "") for k in keys]
    missing = [k for k, v in zip(keys, values) if not v]
    if missing:
        raise DataError(f"{where}: {len(missing)} of {len(keys)} images have no group (no row, or an empty group "
                        f"cell), e.g. '{missing[0]}'; every image needs one")
    return values


def group_ids(values: Sequence[str], names: Optional[List[str]], where: str, column: str) -> Tuple[List[str], np.ndarray]:
    """Group names (sorted, from the training split when ``names`` is None) and each sample's id (-1: a group
    the training split does not have). A column with one value gives no slices to compare: refused."""
    if names is None:
        names = sorted(set(values))
        if len(names) < 2:
            raise DataError(f"{where}: group column '{column}' holds {len(names)} value(s) "
                            f"({', '.join(names) or 'none'}) in the training split; groups need at least 2")
    index = {name: k for k, name in enumerate(names)}
    return names, np.asarray([index.get(v, -1) for v in values], dtype=np.int64)


def check_split_coverage(group_names: Sequence[str], counts: Dict[str, List[int]]) -> List[str]:
    """Groups of the training split that val has no sample of: a warning (their val metrics are missing).
    Returns those group names, for callers that must refuse (a monitor of worst-group accuracy)."""
    val = counts.get("val")
    if not val:
        return []
    absent = [name for name, n_train, n_val in zip(group_names, counts["train"], val) if n_train and not n_val]
    if absent:
        log.warning("group(s) %s have training samples but none in val: val/worst_group_acc and the gaps leave them "
                    "out", ", ".join(absent))
    return absent


GROUP_METRICS = ("worst_group_acc", "mean_group_acc", "dp_gap", "eo_gap")


def require_val_groups(cfg, split_info) -> None:
    """A run that selects or acts on a validation group metric (optimized_metric, which picks the best
    checkpoint, or callbacks.fairness.monitor) is refused when a training group has no val sample: the metric
    would silently leave that group out."""
    absent = (split_info.get("groups") or {}).get("absent_in_val")
    if not absent:
        return
    watched = [(cfg.optimized_metric, "optimized_metric")]
    fairness = cfg.callbacks.get("fairness")
    if fairness is not None and fairness.enabled:
        watched.append((fairness.monitor, "callbacks.fairness.monitor"))
    for metric, key in watched:
        if metric.startswith("val/") and metric.split("/", 1)[1] in GROUP_METRICS:
            raise DataError(f"{key}={metric}, but group(s) {', '.join(absent)} have training samples and none in val; "
                            "give val samples of every group (a larger data.val_fraction, or a val/ folder with them) "
                            "or watch a metric such as val/acc")
