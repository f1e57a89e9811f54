"""The package's shape: layers import only downwards, commands stay thin, each helper has one home.

The layers, lowest first (``docs/ARCHITECTURE.md`` explains them): the base modules
(``errors``, ``log``, ``atomic``, ``native``, ``cpus``), then ``io``, ``reads``, ``peaks``,
``evaluate``, ``model``, then ``checks``, ``commands`` and ``cli``. A module may import
its own layer and the ones below, never one above; sibling subpackages of one rank do
not exist, so every pair of layers has one allowed direction.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "workflow" / "atacdenoise"
LAYERS = ["base", "io", "reads", "peaks", "evaluate", "model", "checks", "commands", "cli"]
BASE = {"errors", "log", "atomic", "native", "cpus"}
#: names every command module defines (its protocol with cli.py), and may therefore share
COMMAND_PROTOCOL = {"add_arguments", "run", "_check_args"}


def layer_of(module: str) -> str:
    """Layer of a dotted module name under ``atacdenoise`` (``atacdenoise.io.bam`` -> ``io``)."""
    parts = module.split(".")
    assert parts[0] == "atacdenoise", module
    if len(parts) == 1:
        return "base"  # the package root: __version__ and the lazily loaded public API
    head = parts[1]
    if head in BASE:
        return "base"
    assert head in LAYERS, f"{module}: not in any layer of {LAYERS}; add it to docs/ARCHITECTURE.md and this test"
    return head


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``atacdenoise`` import in a file, function-level imports included."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "atacdenoise"]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import; write absolute imports (atacdenoise.x.y)"
            if node.module and node.module.split(".")[0] == "atacdenoise":
                # `from atacdenoise.io import bam` imports atacdenoise.io.bam
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    is_module = (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                    found.append((node.lineno, sub if is_module else node.module))
    return found


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_layer():
    for path in package_files():
        layer_of(module_name(path))


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_import_only_downwards(path: Path):
    me = module_name(path)
    mine = LAYERS.index(layer_of(me))
    for line, other in imported_modules(path):
        if other == "atacdenoise":
            continue  # __version__ (the root's API is loaded lazily, on attribute access)
        theirs = LAYERS.index(layer_of(other))
        assert theirs <= mine, (
            f"{path.relative_to(REPO)}:{line}: {me} (layer {LAYERS[mine]}) imports {other} (layer {LAYERS[theirs]}), "
            f"a higher layer; move the shared code down to {LAYERS[mine]} or below"
        )


def test_no_module_or_test_imports_a_command():
    """cli.py loads commands by name; nothing else may depend on a command's code (library code lives below)."""
    offenders = []
    for path in [
        *package_files(),
        *sorted((REPO / "tests").rglob("*.py")),
        *sorted((REPO / "benchmarks").glob("*.py")),
    ]:
        if path == PACKAGE / "cli.py" or path == Path(__file__):
            continue
        for line, other in imported_modules(path):
            if other.startswith("atacdenoise.commands"):
                offenders.append(f"{path.relative_to(REPO)}:{line} imports {other}")
    assert not offenders, "\n".join(offenders)


def test_no_helper_is_defined_twice():
    """A top-level function or class name is defined in one module only (a command's protocol aside)."""
    where = defaultdict(list)
    for path in package_files():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                if path.parent.name == "commands" and node.name in COMMAND_PROTOCOL:
                    continue
                where[node.name].append(str(path.relative_to(PACKAGE)))
    twice = {name: files for name, files in where.items() if len(files) > 1}
    assert not twice, f"defined more than once: {twice}"


def test_commands_define_only_their_protocol_and_private_helpers():
    """Commands are thin: besides add_arguments and run, only private helpers (nothing meant for reuse)."""
    public = []
    for path in sorted((PACKAGE / "commands").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if (
                isinstance(node, (ast.FunctionDef, ast.ClassDef))
                and not node.name.startswith("_")
                and node.name not in COMMAND_PROTOCOL
            ):
                public.append(f"{path.name}: {node.name}")
    assert not public, f"library code in commands/ (move it to its stage's subpackage): {public}"


ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"


def _layer_row(text: str, layer: str) -> str:
    """Return the row of the layer table of docs/ARCHITECTURE.md for ``layer`` ('io', 'base', ...)."""
    cell = {"base": "base:", "checks": "`checks.py`", "cli": "`cli.py`"}.get(layer, f"`{layer}/`")
    rows = [line for line in text.splitlines() if line.startswith("| ") and cell in line.split("|")[2]]
    assert len(rows) == 1, f"docs/ARCHITECTURE.md: expected one layer row for {layer}, found {len(rows)}"
    return rows[0]


def test_architecture_doc_names_every_module_in_its_layer_row():
    text = ARCHITECTURE.read_text()
    for path in [*package_files(), *sorted(PACKAGE.rglob("*.c"))]:
        rel = path.relative_to(PACKAGE)
        if rel.name == "__init__.py" and rel.parent != Path("."):
            continue
        layer = rel.stem if rel.parts[0] in ("checks.py", "cli.py") else layer_of(module_name(path.with_suffix(".py")))
        if layer == "commands":
            continue  # one per subcommand, listed by cli.COMMANDS
        row = _layer_row(text, layer)
        assert f"`{rel.name}`" in row, f"docs/ARCHITECTURE.md: {rel} is not named in the {layer} row"


def test_every_path_named_in_the_architecture_doc_exists():
    text = ARCHITECTURE.read_text()
    named = set(re.findall(r"`((?:tests|workflow|docs|benchmarks)/[\w/.-]+\.(?:py|smk|c|md|yaml))`", text))
    in_layers = re.findall(r"`((?:io|reads|peaks|model|evaluate)/\w+\.(?:py|c))`", text)
    named |= {f"workflow/atacdenoise/{p}" for p in in_layers}
    for layer in ("io", "reads", "peaks", "evaluate", "model"):
        row = _layer_row(text, layer)
        named |= {f"workflow/atacdenoise/{layer}/{f}" for f in re.findall(r"`(\w+\.(?:py|c))`", row)}
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"docs/ARCHITECTURE.md names files that do not exist: {missing}"
