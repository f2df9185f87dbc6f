"""A folder of images, one subfolder per class; or train/ val/ test/ subfolders of that layout."""

import logging
import os
from typing import List, Optional, Tuple

from torchvision.datasets.folder import IMG_EXTENSIONS

from tl_lightning.data.base import RawData, TransferDataModule
from tl_lightning.data.groups import group_ids, groups_of_files, read_groups_csv
from tl_lightning.data.sources import FileSource
from tl_lightning.data.unlabeled import UNLABELED_CLASS
from tl_lightning.errors import DataError
from tl_lightning.registry import DATAMODULES

log = logging.getLogger(__name__)
SPLIT_DIRS = ("train", "val", "test")


def _class_dirs(root: str) -> List[str]:
    """Subfolders of root that are classes. A symlink resolving into the tree (root itself, or another class
    folder) is skipped with a warning: it would make a class twice, or a class of everything."""
    real_root = os.path.realpath(root)
    names, seen = [], {}
    for d in sorted(os.listdir(root)):
        path = os.path.join(root, d)
        if d.startswith(".") or not os.path.isdir(path):
            continue
        real = os.path.realpath(path)
        if os.path.islink(path) and (real == real_root or real in seen or real_root.startswith(real + os.sep)):
            log.warning("%s: skipping %s, a link to %s inside the same tree", root, d, real)
            continue
        seen[real] = d
        names.append(d)
    return names


def _images_under(folder: str, visited: set) -> List[str]:
    """Image files under folder, following directory links but never into a folder already walked (a link loop,
    or a link into another class)."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:
            log.warning("skipping %s: its folder %s is already part of the dataset", dirpath, real)
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames.sort()
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            path = os.path.join(dirpath, fname)
            if not fname.lower().endswith(IMG_EXTENSIONS):
                raise DataError(f"not an image file: {path} (image extensions: {', '.join(IMG_EXTENSIONS)})")
            files.append(path)
    return files


def _too_low_hint(root: str) -> str:
    """For a folder of images with no subfolders: a class folder given as data.root, one level too low."""
    try:
        images = [f for f in os.listdir(root) if f.lower().endswith(IMG_EXTENSIONS)]
    except OSError:
        return ""
    if not images:
        return ""
    parent = os.path.dirname(os.path.abspath(root))

    def has_images(name: str) -> bool:
        try:
            return any(f.lower().endswith(IMG_EXTENSIONS) for f in os.listdir(os.path.join(parent, name)))
        except OSError:
            return False

    siblings = _class_dirs(parent)
    if len(siblings) >= 2 and all(has_images(name) for name in siblings[:50]):
        return (f"; it holds {len(images)} images itself and looks one level too low: data.root={parent} has "
                f"{len(siblings)} subfolders ({', '.join(siblings[:4])}{', ...' if len(siblings) > 4 else ''})")
    return f"; it holds {len(images)} images itself: put each class's images in a subfolder named after the class"


def scan_class_folders(root: str, class_names: Optional[List[str]] = None) -> Tuple[FileSource, List[str]]:
    """List every image under root/<class>/, refusing empty classes, non-image files and fewer than 2 classes."""
    names = class_names or _class_dirs(root)
    if not names:
        raise DataError(f"data.root: {root} has no class subfolders (expected {root}/<class>/<image>)"
                        f"{_too_low_hint(root)}")
    if len(names) < 2:
        only = os.path.join(root, names[0])
        inner = _class_dirs(only)
        hint = f"; it looks one level too high: data.root={only} has {len(inner)} subfolders" if len(inner) >= 2 else ""
        raise DataError(f"data.root: {root} has one class folder ('{names[0]}'); a classifier needs at least 2{hint}")
    paths, targets = [], []
    visited = {os.path.realpath(root)}  # a link back to the root is not walked again
    for label, name in enumerate(names):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            raise DataError(f"{root}: class folder '{name}' is missing (classes come from {SPLIT_DIRS[0]}/)")
        files = _images_under(folder, visited)
        if not files:
            raise DataError(f"class folder {folder} has no images")
        paths += files
        targets += [label] * len(files)
    return FileSource(paths, targets, root), list(names)


@DATAMODULES.register()
class ImageFolderDataModule(TransferDataModule):
    name = "image_folder"

    def load(self) -> RawData:
        root = self.cfg.root
        if not root:
            raise DataError("data=image_folder needs data.root=<folder of class subfolders, or of train/ val/ test/>")
        if not os.path.isdir(root):
            raise DataError(f"data.root: no such directory: {root}")
        if self.as_unlabeled and not _class_dirs(root):
            return self._unlabeled_folder(root)
        if os.path.isdir(os.path.join(root, "train")):
            train, names = scan_class_folders(os.path.join(root, "train"))
            parts = {}
            for split in ("val", "test"):
                folder = os.path.join(root, split)
                parts[split] = scan_class_folders(folder, names)[0] if os.path.isdir(folder) else None
            raw = RawData(train=train, val=parts["val"], test=parts["test"], class_names=names)
        else:
            train, names = scan_class_folders(root)
            raw = RawData(train=train, class_names=names)
        self._attach_groups(raw)
        return raw

    def _unlabeled_folder(self, root: str) -> RawData:
        """As data.unlabeled, a folder of images without class subfolders: one pool of unlabelled images."""
        files = _images_under(root, set())
        if not files:
            raise DataError(f"data.root: {root} holds no images (nor class subfolders)")
        return RawData(train=FileSource(files, [0] * len(files), root), class_names=[UNLABELED_CLASS])

    def _attach_groups(self, raw: RawData) -> None:
        """data.groups_csv: each image's group from the metadata file (tl_lightning/data/groups.py)."""
        cfg = self.cfg
        self.group_names = []
        if not cfg.get("groups_csv"):
            return

        table = read_groups_csv(cfg.groups_csv, cfg.groups_key_column, cfg.group_column)
        names = None
        for source in (raw.train, raw.val, raw.test):
            if source is None:
                continue
            values = groups_of_files(source.paths, cfg.root, table, cfg.groups_csv)
            names, source.groups = group_ids(values, names, cfg.groups_csv, cfg.group_column)
        self.group_names = names
