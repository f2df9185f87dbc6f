"""Every sample of a dataset, unsplit, with the eval transform: what ``eval`` tests on data other than the
checkpoint's own (a folder of new images need not hold enough of each class to be split)."""

from typing import Any, Dict

import numpy as np
from torch.utils.data import ConcatDataset

from tl_lightning.data.sources import SplitDataset, class_counts
from tl_lightning.data.splits import check_labels, label_map_for
from tl_lightning.task import TaskDescription


def all_samples(datamodule) -> ConcatDataset:
    """Sets the datamodule's class names and split info; returns its samples (train, val, test sources alike)."""
    raw = datamodule.load()
    parts = [p for p in (raw.train, raw.val, raw.test) if p is not None]
    for part in parts:
        check_labels(part.targets, len(raw.class_names), part.origin)
    label_map, datamodule.class_names, kept = label_map_for(datamodule.cfg.classes, raw.class_names,
                                                            f"data={datamodule.name}")
    transform = datamodule.preprocessing.transform(train=False)
    datasets = [SplitDataset(p, np.flatnonzero(label_map[p.targets] >= 0), label_map, transform) for p in parts]
    targets = np.concatenate([d.targets for d in datasets])
    info: Dict[str, Any] = {"dataset": datamodule.name, "split": "all", "kept_class_ids": kept,
                            "sizes": {"all": int(len(targets))},
                            "class_counts": {"all": class_counts(targets, datamodule.num_classes)}}
    datamodule.split_info = info
    return ConcatDataset(datasets)


def all_samples_task(datamodule) -> TaskDescription:
    """The task of the data ``all_samples`` read: its classes, no groups (the data is not split into slices)."""
    return TaskDescription(class_names=tuple(datamodule.class_names),
                           class_counts=dict(datamodule.split_info["class_counts"]))
