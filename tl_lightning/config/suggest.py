"""'Did you mean' for misspelled config keys, groups and options, from the schemas and the config tree
(difflib), and which data/strategy option owns a key the chosen one lacks. No torch, no Hydra state."""

import dataclasses
import difflib
import re
import typing
from functools import lru_cache
from typing import Dict, List, Optional, Set

from hydra.errors import MissingConfigException

from tl_lightning.config import group_options, schema


def _fields(cls, prefix: str, out: Dict[str, Set[str]], owner: str) -> None:
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        out.setdefault(key, set()).add(owner)
        kind = f.type if isinstance(f.type, type) else None
        if kind is None and isinstance(f.type, str):
            kind = getattr(__import__("tl_lightning.config.schema", fromlist=["x"]), f.type, None)
        if kind is None:
            args = [a for a in typing.get_args(f.type) if dataclasses.is_dataclass(a)]
            kind = args[0] if args else None
        if kind is not None and dataclasses.is_dataclass(kind):
            _fields(kind, f"{key}.", out, owner)


@lru_cache(maxsize=1)
def known_keys() -> Dict[str, Set[str]]:
    """Every config key the schemas define -> the options that have it ('' for keys every run has;
    'strategy=ewc' for a key only that strategy's schema has)."""

    keys: Dict[str, Set[str]] = {}
    _fields(schema.TrainConf, "", keys, "")
    options = group_options()
    for group in ("data", "strategy"):
        for option in options[group]:
            _fields(schema.schema_of(group, option), f"{group}.", keys, f"{group}={option}")
    return keys


def close(word: str, candidates, n: int = 1) -> List[str]:
    return difflib.get_close_matches(word, sorted(set(candidates)), n=n, cutoff=0.6)


MAPPINGS = ("data.sources", "loss.terms", "callbacks.extra")  # Dict fields of the schemas: user-named entries


def unknown_key(key: str) -> str:
    """One line for a key the config does not have: a near miss, or the option it belongs to."""
    mapping = next((m for m in MAPPINGS if key == m or key.startswith(m + ".")), None)
    if mapping:
        return (f"config key '{key}': {mapping} is a mapping; Hydra adds entries with '+' and replaces it with '++', "
                f"e.g. '+{mapping}.<name>={{...}}' or '++{mapping}={{<name>: {{...}}}}'")
    keys = known_keys()
    groups = group_options()
    owners = sorted(o for o in keys.get(key, ()) if o)
    if owners:
        return (f"config key '{key}' is not a key of the {key.split('.')[0]} chosen; it belongs to "
                f"{', '.join(owners)} (choose it, e.g. {owners[0]})")
    parent, _, leaf = key.rpartition(".")
    siblings = [k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent]
    if not parent:
        siblings += list(groups)
    guess = close(leaf, siblings)
    elsewhere = sorted(k for k in keys if k.rpartition(".")[2] == leaf and k.count(".") == 1
                       and k.split(".")[0] != parent)
    if parent and parent.count(".") == 0 and elsewhere and not (guess and guess[0] == leaf):
        # a key of another group (data.lr, trainer.lr): name the group that has it
        return f"unknown config key '{key}'; {leaf} is a key of {elsewhere[0].split('.')[0]}: did you mean {elsewhere[0]}?"
    if guess:
        full = f"{parent}.{guess[0]}" if parent else guess[0]
        return f"unknown config key '{key}'; did you mean {full}?"
    shown = sorted(set(siblings))
    if not shown:
        return f"unknown config key '{key}'"
    return f"unknown config key '{key}'; valid keys{f' of {parent}' if parent else ''}: {', '.join(shown)}"


def missing_option(group: str, name: str, options: List[str]) -> str:
    valid = sorted(o for o in options if not o.startswith("schema"))  # ConfigStore schema entries are not options
    guess = close(name, valid)
    hint = f"did you mean {group}={guess[0]}? " if guess else ""
    return f"unknown option {group}={name}; {hint}valid: {', '.join(valid)}"


_OVERRIDE = re.compile(r"Could not override '([\w.]+)'")
_NOT_IN = re.compile(r"config key '([\w.]+)': Key '\w+' not in")
_FIND = re.compile(r"Could not find '([\w/]+)/([^'/]+)'")


def rewrite(message: str, options: Optional[List[str]] = None) -> Optional[str]:
    """A friendlier one line for Hydra/OmegaConf messages about unknown keys and options (None: no rewrite)."""
    found = _OVERRIDE.search(message) or _NOT_IN.search(message)
    if found and ("not in" in message or "No match" in message) and not found.group(1).startswith("hydra."):
        return unknown_key(found.group(1))
    found = _FIND.search(message)
    if found and options is not None:
        return missing_option(found.group(1), found.group(2), options)
    return None


def one_line(exc: BaseException) -> str:
    """Hydra/OmegaConf errors span several lines; keep what is wrong, what is valid and where."""
    options = exc.options if isinstance(exc, MissingConfigException) else None
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    cause = exc.__cause__
    if cause is not None:
        cause_lines = [ln.strip() for ln in str(cause).strip().splitlines() if ln.strip()]
        lines = lines[:1] + cause_lines[:1] + lines[1:]
    text = "; ".join(ln.rstrip(".") for ln in lines[:3]) if lines else type(exc).__name__
    return rewrite(text, options) or text
