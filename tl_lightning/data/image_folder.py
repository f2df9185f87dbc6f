"""A folder of images, one subfolder per class; or train/ val/ test/ subfolders of that layout."""

import os
from typing import List, Optional, Tuple

from torchvision.datasets.folder import IMG_EXTENSIONS

from tl_lightning.data.base import RawData, TransferDataModule
from tl_lightning.data.sources import FileSource
from tl_lightning.errors import DataError

SPLIT_DIRS = ("train", "val", "test")


def _class_dirs(root: str) -> List[str]:
    return sorted(d for d in os.listdir(root) if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))


def scan_class_folders(root: str, class_names: Optional[List[str]] = None) -> Tuple[FileSource, List[str]]:
    """List every image under root/<class>/, refusing empty classes and non-image files."""
    names = class_names or _class_dirs(root)
    if not names:
        raise DataError(f"data.root: {root} has no class subfolders (expected {root}/<class>/<image>)")
    paths, targets = [], []
    for label, name in enumerate(names):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            raise DataError(f"{root}: class folder '{name}' is missing (classes come from {SPLIT_DIRS[0]}/)")
        files = []
        for dirpath, _, filenames in sorted(os.walk(folder)):
            for fname in sorted(filenames):
                if fname.startswith("."):
                    continue
                path = os.path.join(dirpath, fname)
                if not fname.lower().endswith(IMG_EXTENSIONS):
                    raise DataError(f"not an image file: {path} (image extensions: {', '.join(IMG_EXTENSIONS)})")
                files.append(path)
        if not files:
            raise DataError(f"class folder {folder} has no images")
        paths += files
        targets += [label] * len(files)
    return FileSource(paths, targets, root), list(names)


class ImageFolderDataModule(TransferDataModule):
    name = "image_folder"

    def load(self) -> RawData:
        root = self.cfg.root
        if not root:
            raise DataError("data=image_folder needs data.root=<folder of class subfolders, or of train/ val/ test/>")
        if not os.path.isdir(root):
            raise DataError(f"data.root: no such directory: {root}")
        if os.path.isdir(os.path.join(root, "train")):
            train, names = scan_class_folders(os.path.join(root, "train"))
            parts = {}
            for split in ("val", "test"):
                folder = os.path.join(root, split)
                parts[split] = scan_class_folders(folder, names)[0] if os.path.isdir(folder) else None
            return RawData(train=train, val=parts["val"], test=parts["test"], class_names=names)
        train, names = scan_class_folders(root)
        return RawData(train=train, class_names=names)
