"""The config tree's location, schemas (schema.py) and checks (validate.py)."""

from pathlib import Path
from typing import Dict, List

from tl_lightning.errors import unknown_name

_PACKAGE = Path(__file__).resolve().parents[1]
# installed (pip install .): the configs ship inside the package; in a checkout: conf/ at the repo root
CONFIG_DIR = str(_PACKAGE / "conf" if (_PACKAGE / "conf" / "train.yaml").is_file() else _PACKAGE.parent / "conf")


def group_options(config_dir: str = CONFIG_DIR) -> Dict[str, List[str]]:
    """Each config group of the tree (hydra/launcher included, Hydra's own settings not) and its options,
    from the YAML files; ConfigStore schema entries are not options."""
    root = Path(config_dir)
    groups: Dict[str, List[str]] = {}
    for path in sorted(root.rglob("*.yaml")):
        group = path.parent.relative_to(root).as_posix()
        if group in (".", "hydra"):
            continue
        groups.setdefault(group, []).append(path.stem)
    return {g: sorted(opts) for g, opts in sorted(groups.items())}


def load_option(group: str, name: str):
    """An option file of a config group as a plain node (its defaults list dropped); an unknown name is one line."""
    from omegaconf import OmegaConf

    options = group_options()[group]
    if name not in options:
        raise unknown_name(group, name, options, group)
    node = OmegaConf.load(Path(CONFIG_DIR) / group / f"{name}.yaml")
    node.pop("defaults", None)
    return node
