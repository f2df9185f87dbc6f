"""The configuration reference page (docs/reference/config.md), generated from the schemas (their fields, types,
defaults and the comment beside each field) and the option files of every config group. ``python
scripts/config_reference.py`` writes it; ``--check`` (and tests/test_docs.py) fails when the page is stale. No
torch, no Hydra state."""

import ast
import dataclasses
import inspect
import io
import tokenize
import typing
from pathlib import Path
from typing import Dict, List, Tuple

from omegaconf import MISSING, OmegaConf

from tl_lightning.config import CONFIG_DIR, group_options, schema

PAGE = Path("docs") / "reference" / "config.md"
# the top-level sections in the order a user meets them, each a field of TrainConf
SECTIONS = ("backbone", "data", "strategy", "loss", "optimizer", "scheduler", "trainer", "logger", "callbacks",
            "paths")


def field_comments(cls) -> Dict[str, str]:
    """Field name -> the comment beside it (same line) or the comment lines right above it, in ``cls``'s source."""
    source = inspect.getsource(cls)
    tree = ast.parse(source)
    lines = source.splitlines()
    comments: Dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    out = {}
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        text = comments.get(node.lineno)
        if text is None:  # a block of comment lines directly above
            above, row = [], node.lineno - 1
            while row >= 1 and lines[row - 1].strip().startswith("#"):
                above.insert(0, comments.get(row, ""))
                row -= 1
            text = " ".join(above)
        out[node.target.id] = text
    return out


def type_text(kind) -> str:
    if isinstance(kind, type) and not typing.get_args(kind):
        return kind.__name__
    text = str(kind).replace("typing.", "")
    for name in ("str", "int", "float", "bool"):
        text = text.replace(f"<class '{name}'>", name)
    return text


def yaml_text(value) -> str:
    """A value as it is written on the command line or in an option file (``null``, ``[a, b]``, ``0.1``)."""
    return OmegaConf.to_yaml(OmegaConf.create({"v": value})).strip()[3:].replace("\n", " ") or "null"


def default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return "(below)"
    else:
        return "(required)"
    if value is MISSING or value == "???":
        return "(set by the option)"
    return f"`{yaml_text(value)}`"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def own_fields(cls) -> List[dataclasses.Field]:
    """The fields ``cls`` adds or gives another default than its dataclass parent."""
    parent = next((b for b in cls.__mro__[1:] if dataclasses.is_dataclass(b)), None)
    inherited = {f.name: f for f in dataclasses.fields(parent)} if parent else {}
    out = []
    for f in dataclasses.fields(cls):
        base = inherited.get(f.name)
        if base is None or default_text(base) != default_text(f):
            out.append(f)
    return out


def schema_table(cls, prefix: str, nested: List[Tuple[str, type]], fields=None) -> List[str]:
    """The table of ``fields`` (default: the ones ``cls`` adds or changes); dataclass fields go to ``nested``."""
    comments = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            comments.update(field_comments(klass))
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in own_fields(cls) if fields is None else fields:
        kind = f.type
        inner = [a for a in typing.get_args(kind) if dataclasses.is_dataclass(a)] or \
            ([kind] if dataclasses.is_dataclass(kind) else [])
        if inner and f.default_factory is not dataclasses.MISSING:
            nested.append((f"{prefix}{f.name}", inner[0]))
        rows.append(f"| `{prefix}{f.name}` | {cell(type_text(kind))} | {cell(default_text(f))} | "
                    f"{cell(comments.get(f.name, ''))} |")
    return rows


def doc_of(cls) -> str:
    own = cls.__dict__.get("__doc__")
    return " ".join(inspect.cleandoc(own).split()) if own and not own.startswith(cls.__name__ + "(") else ""


def section(cls, prefix: str, title: str, level: int = 3) -> List[str]:
    nested: List[Tuple[str, type]] = []
    out = [f"{'#' * level} {title}", ""]
    if doc_of(cls):
        out += [doc_of(cls), ""]
    out += schema_table(cls, prefix, nested) + [""]
    for key, inner in nested:
        out += section(inner, f"{key}.", f"`{key}` ({inner.__name__})", level + 1)
    return out


def option_rows(group: str) -> List[str]:
    rows = ["| option | what the file sets |", "|---|---|"]
    for name in group_options()[group]:
        node = OmegaConf.load(Path(CONFIG_DIR) / group / f"{name}.yaml")
        defaults = [d for d in node.pop("defaults", []) if not (isinstance(d, str) and d == "_self_")]
        named = [d if isinstance(d, str) else OmegaConf.to_yaml(d).strip().replace("\n", " ") for d in defaults]
        parts = [f"defaults: {', '.join(named)}"] if named else []
        flat = _flatten(OmegaConf.to_container(node))
        parts += [f"`{k}={v}`" for k, v in flat]
        rows.append(f"| `{group}={name}` | {cell('; '.join(parts)) if parts else '(the schema defaults)'} |")
    return rows


def _flatten(value, prefix: str = "") -> List[Tuple[str, str]]:
    if isinstance(value, dict) and value:
        out = []
        for k, v in value.items():
            out += _flatten(v, f"{prefix}{k}.")
        return out
    return [(prefix.rstrip("."), yaml_text(value))]


def schemas_of(group: str) -> List[type]:
    seen: List[type] = []
    for name in group_options()[group]:
        cls = schema.schema_of(group, name)
        for klass in reversed(cls.__mro__):
            if dataclasses.is_dataclass(klass) and klass not in seen:
                seen.append(klass)
    return seen


def render() -> str:
    out = ["# Configuration reference", "",
           "<!-- generated by `python scripts/config_reference.py` from tl_lightning/config/schema.py and conf/; "
           "do not edit: tests/test_docs.py fails when it is stale -->", "",
           "Every key of `python train.py`'s config: its type, its default in the schema and what it means, then "
           "what each option file of the group changes. Override any of them on the command line (`key=value`); "
           "`python train.py <overrides> --cfg job` prints the composed result. Data and strategy options each have "
           "a schema of their own (its keys are listed where it adds or changes them).", ""]
    fields = {f.name: f for f in dataclasses.fields(schema.TrainConf)}
    out += ["## Top level", ""]
    top = [f for f in dataclasses.fields(schema.TrainConf) if f.name not in SECTIONS]
    out += schema_table(schema.TrainConf, "", [], top) + [""]
    options = group_options()
    for name in SECTIONS:
        out += [f"## `{name}`", ""]
        if name in options:
            out += [f"Options (`{name}=<option>`):", ""] + option_rows(name) + [""]
        if name in ("data", "strategy"):
            for cls in schemas_of(name):
                out += section(cls, f"{name}.", f"{cls.__name__}", 3)
        else:
            kind = fields[name].type
            out += section(kind, f"{name}.", f"{kind.__name__}", 3)
    for group in sorted(set(options) - set(SECTIONS)):
        out += [f"## `{group}`", "", f"Options (`{group}=<option>`):", ""] + option_rows(group) + [""]
    return "\n".join(out).rstrip() + "\n"
