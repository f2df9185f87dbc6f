"""The documentation cannot drift: the generated configuration page is current, every test file is on the testing
page, and every Hydra command in the README and docs/ composes as written (what `--cfg job` checks; each sweep at
its first and its last values). `make test` also builds the site with `mkdocs build --strict`."""

import re
import shlex

import pytest
from helpers import ROOT
from hydra.core.override_parser.overrides_parser import OverridesParser

from tl_lightning.compose import compose_config
from tl_lightning.config.reference import PAGE, render

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
APPS = {"train.py": "train", "tl-train": "train", "tl_lightning.eval": "eval", "tl_lightning.predict": "predict",
        "tl_lightning.export": "export", "tl_lightning.diagnose": "diagnose", "tl-eval": "eval",
        "tl-predict": "predict", "tl-export": "export", "tl-diagnose": "diagnose"}


def test_the_configuration_reference_is_generated_from_the_current_schemas():
    assert (ROOT / PAGE).read_text() == render(), "stale: run python scripts/config_reference.py"


def test_the_configuration_reference_changes_with_a_schema_comment(monkeypatch):
    """The check can fail: a changed comment beside a schema field changes the page."""
    import tl_lightning.config.reference as reference

    real = reference.field_comments
    monkeypatch.setattr(reference, "field_comments", lambda cls: {**real(cls), "pooling": "changed"})
    assert "| changed |" in reference.render() and reference.render() != (ROOT / PAGE).read_text()


def test_every_test_file_is_on_the_testing_page():
    page = (ROOT / "docs" / "testing.md").read_text()
    missing = [p.name for p in sorted((ROOT / "tests").glob("test_*.py")) if f"`{p.name}`" not in page]
    assert not missing, f"add to docs/testing.md: {missing}"


def shell_lines(text: str):
    """(page line, command) for each command of the page's bash blocks, continuation lines joined and simple
    VAR="..." assignments of the block substituted."""
    for block in re.finditer(r"```bash\n(.*?)```", text, re.S):
        start = text[: block.start()].count("\n") + 2
        variables, pending, first = {}, "", start
        for number, line in enumerate(block.group(1).splitlines(), start):
            if not pending:
                first = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command, pending = pending + line, ""
            assignment = re.match(r'^([A-Z_]+)="(.*)"$', command.strip())
            if assignment:
                variables[assignment.group(1)] = assignment.group(2)
                continue
            for name, value in variables.items():
                command = command.replace(f"${name}", value)
            yield first, command


def hydra_commands():
    for page in PAGES:
        for number, command in shell_lines(page.read_text()):
            # a placeholder the reader fills in (<run dir>, <date>_<time>) becomes a plain word
            command = re.sub(r"<[^<>]*>", "placeholder", command)
            try:
                words = shlex.split(command, comments=True)
            except ValueError:
                continue
            if words[:1] == ["make"] and any(w.startswith("ARGS=") for w in words):
                words = ["python", "train.py", *shlex.split(next(w for w in words if w.startswith("ARGS="))[5:])]
            app = next((APPS[w] for w in words[:3] if w in APPS), None)
            if app is None:
                continue
            position = next(i for i, w in enumerate(words) if w in APPS)
            args = words[position + 1:]
            if app == "diagnose" and args and "=" not in args[0]:
                args = [f"command={args[0]}", *args[1:]]
            yield pytest.param(app, args, id=f"{page.relative_to(ROOT)}:{number}")


def expanded(args):
    """The overrides at each sweep's first values, and at its last: what -m would run first and last."""
    multirun = "-m" in args or "--multirun" in args or any(a.startswith("hparams_search=") for a in args)
    args = [a for a in args if a not in ("-m", "--multirun", "--help", "--cfg", "job")]
    if not multirun:
        return [args]
    parser = OverridesParser.create()
    first, last = [], []
    for arg in args:
        override = parser.parse_override(arg)
        if override.is_sweep_override() and not arg.startswith("hydra."):
            values = list(override.sweep_string_iterator())
            key = override.get_key_element()
            first.append(f"{key}={values[0]}")
            last.append(f"{key}={values[-1]}")
        else:
            first.append(arg)
            last.append(arg)
    return [first, last] if first != last else [first]


COMMANDS = list(hydra_commands())


def test_the_pages_have_commands_to_check():
    pages = {c.id.split(":")[0] for c in COMMANDS}
    assert len(COMMANDS) > 60 and {"README.md", "docs/results.md", "docs/deploy.md", "docs/scale_out.md"} <= pages


@pytest.mark.parametrize("app, args", COMMANDS)
def test_every_hydra_command_in_the_docs_composes(app, args, tmp_path):
    for overrides in expanded(args):
        compose_config(overrides, str(tmp_path / "run"), validate=False, config_name=app)
