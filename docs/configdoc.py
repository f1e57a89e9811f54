"""Render the config-key documentation of README.md and config/README.md from the config schema.

``workflow/schemas/config.schema.yaml`` is the one place where a config key is documented: its
``description``, its ``default`` (or ``x-default``, a default the code applies) and its type and
allowed values. This script renders two blocks from it, each between marker comments
(``<!-- BEGIN generated: NAME (make docs) -->`` ... ``<!-- END generated -->``), and leaves the
hand-written text around them as it is:

* ``README.md``, block ``config keys``: the overview table of the main keys, the schema properties
  annotated ``x-readme``. ``x-readme: true`` on a key gives it a row; on an object (that has no default
  of its own other than ``{}``) the row is ``key.*`` and its default column lists its children's
  defaults, or with ``x-readme: [child, ...]`` only those children's;
* ``config/README.md``, block ``config key reference``: every key, nested keys with dotted names
  (``model.training.lr``), with its type and allowed values, default and description.

Usage: ``python docs/configdoc.py --write`` (``make docs``) rewrites the blocks that differ;
``python docs/configdoc.py --check`` changes nothing, prints a unified diff of every block that
differs from what the schema gives and exits with status 1 (0 when all agree).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: the repository root (this file is docs/configdoc.py)
REPO = Path(__file__).resolve().parents[1]
#: the config schema, relative to the repository root
SCHEMA = Path("workflow/schemas/config.schema.yaml")
#: the closing marker of every generated block
END = "<!-- END generated -->"


@dataclass(frozen=True)
class Key:
    """One config key: its dotted name, its schema (``$ref`` resolved) and whether its parent requires it."""

    name: str
    node: dict[str, Any]
    required: bool


def load_schema(path: Path) -> dict[str, Any]:
    """Read the YAML schema at ``path``."""
    return yaml.safe_load(path.read_text())


def resolve(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Return ``node`` with a local ``$ref`` (``#/definitions/NAME``) replaced by what it names."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target = schema["definitions"][ref.removeprefix("#/definitions/")]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def keys(schema: dict[str, Any], node: dict[str, Any] | None = None, prefix: str = "") -> Iterator[Key]:
    """Yield every property of the schema, depth first in schema order, each object before its children."""
    node = schema if node is None else node
    required = set(node.get("required", ()))
    for name, sub in (node.get("properties") or {}).items():
        key = Key(f"{prefix}{name}", resolve(sub, schema), name in required)
        yield key
        yield from keys(schema, key.node, f"{key.name}.")


def missing_descriptions(schema: dict[str, Any]) -> list[str]:
    """Return the dotted names of the keys without a ``description``."""
    return [key.name for key in keys(schema) if not str(key.node.get("description", "")).strip()]


def cell(text: str) -> str:
    """Return ``text`` on one line with ``|`` escaped, fit for a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def value(data: Any) -> str:
    """Return a config value as YAML flow text in a code span (``null``, ``true``, ``[A]``, ``{}``)."""
    text = yaml.safe_dump(data, default_flow_style=True, width=10**6).strip()
    return f"`{text.removesuffix('...').strip()}`"


def default_text(key: Key) -> str:
    """Return the default column of a key: its (x-)default, ``required``, or ``—`` when it has none."""
    for field in ("default", "x-default"):
        if field in key.node:
            return value(key.node[field])
    return "required" if key.required else "—"


def type_text(node: dict[str, Any]) -> str:
    """Return a key's type and allowed values, e.g. ``integer ≥ 0, ≤ 255`` or ``one of `batch`, `window` ``."""
    branches = node.get("oneOf") or node.get("anyOf")
    if branches:
        return " or ".join(type_text(branch) for branch in branches)
    if "enum" in node:
        values = [value(v) for v in node["enum"]]
        return values[0] if len(values) == 1 else "one of " + ", ".join(values)
    kinds = node.get("type", "any")
    return " or ".join(_kind_text(kind, node) for kind in (kinds if isinstance(kinds, list) else [kinds]))


def _kind_text(kind: str, node: dict[str, Any]) -> str:
    """Return one JSON type of ``node`` with the constraints of the schema that apply to it."""
    limits = []
    if kind in ("integer", "number"):
        signs = {"minimum": "≥", "exclusiveMinimum": ">", "maximum": "≤", "exclusiveMaximum": "<"}
        limits = [f"{sign} {node[word]}" for word, sign in signs.items() if word in node]
    elif kind == "string" and "pattern" in node:
        limits = [f"matching `{node['pattern']}`"]
    elif kind == "array":
        if "minItems" in node:
            limits.append(f"at least {node['minItems']} item{'s' if node['minItems'] != 1 else ''}")
        if node.get("uniqueItems"):
            limits.append("no repeats")
        if isinstance(node.get("items"), dict):
            return f"array of {type_text(node['items'])}" + ("; " + ", ".join(limits) if limits else "")
    elif kind == "object" and isinstance(node.get("additionalProperties"), dict):
        names = node.get("propertyNames", {}).get("pattern")
        return f"mapping of names{f' matching `{names}`' if names else ''} to {type_text(node['additionalProperties'])}"
    return kind + (" " + ", ".join(limits) if limits else "")


def readme_rows(schema: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """Yield (key, default, meaning) of every key marked ``x-readme``: see the module docstring."""
    for key in keys(schema):
        mark = key.node.get("x-readme")
        if not mark:
            continue
        children = key.node.get("properties")
        own_default = key.node.get("default", key.node.get("x-default", {}))
        if not children or own_default != {}:
            yield f"`{key.name}`", default_text(key), key.node["description"]
            continue
        names = list(children) if mark is True else mark
        unknown = sorted(set(names) - set(children))
        if unknown:
            raise ValueError(f"{key.name}: x-readme names {unknown}, which are not its keys")
        parts = []
        for name in names:
            child = Key(name, resolve(children[name], schema), name in key.node.get("required", ()))
            parts.append(f"{name} {default_text(child)}")
        yield f"`{key.name}.*`", ", ".join(parts), key.node["description"]


def readme_table(schema: dict[str, Any]) -> str:
    """Render the README's overview table of the main keys."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| {cell(k)} | {cell(d)} | {cell(m)} |" for k, d, m in readme_rows(schema)]
    return "\n".join(lines)


def reference_table(schema: dict[str, Any]) -> str:
    """Render the reference of every key for config/README.md."""
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for key in keys(schema):
        row = (f"`{key.name}`", type_text(key.node), default_text(key), key.node["description"])
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Block:
    """A generated block: the file it is in (relative to the root), its name and how it is rendered."""

    path: Path
    name: str
    render: Callable[[dict[str, Any]], str]

    @property
    def begin(self) -> str:
        """Return the opening marker."""
        return f"<!-- BEGIN generated: {self.name} (make docs) -->"


BLOCKS = (
    Block(Path("README.md"), "config keys", readme_table),
    Block(Path("config/README.md"), "config key reference", reference_table),
)


def replace_block(text: str, block: Block, body: str) -> str:
    """Return ``text`` with the lines between the block's markers replaced by ``body``."""
    pattern = re.compile(rf"^{re.escape(block.begin)}\n.*?^{re.escape(END)}$", re.MULTILINE | re.DOTALL)
    found = len(pattern.findall(text))
    if found != 1:
        raise ValueError(f"{block.path}: expected one block from {block.begin!r} to {END!r}, found {found}")
    return pattern.sub(lambda _: f"{block.begin}\n{body}\n{END}", text)


def generate(root: Path) -> dict[Path, tuple[str, str]]:
    """Return, for every file with a generated block, its (current text, text with the block regenerated)."""
    schema = load_schema(root / SCHEMA)
    missing = missing_descriptions(schema)
    if missing:
        raise ValueError(f"{SCHEMA}: keys without a description: {', '.join(missing)}")
    out = {}
    for block in BLOCKS:
        path = root / block.path
        old, current = out.get(path) or (path.read_text(),) * 2
        out[path] = (old, replace_block(current, block, block.render(schema)))
    return out


def check(root: Path) -> list[str]:
    """Return a unified diff for every file whose generated blocks differ from the schema (empty: all agree)."""
    diffs = []
    for path, (old, new) in generate(root).items():
        if old != new:
            name = str(path.relative_to(root))
            lines = difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{name}", f"b/{name}")
            diffs.append("".join(lines))
    return diffs


def write(root: Path) -> list[Path]:
    """Rewrite the files whose generated blocks differ from the schema; return their paths."""
    written = []
    for path, (old, new) in generate(root).items():
        if old != new:
            path.write_text(new)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Run the command line: ``--write`` or ``--check`` (see the module docstring); return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the generated blocks")
    mode.add_argument("--check", action="store_true", help="print a diff and exit 1 when a block is stale")
    parser.add_argument("--root", type=Path, default=REPO, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        if args.write:
            for path in write(args.root):
                print(f"wrote {path}")
            return 0
        diffs = check(args.root)
    except (OSError, ValueError) as exc:
        print(f"configdoc: {exc}", file=sys.stderr)
        return 2
    for diff in diffs:
        sys.stdout.write(diff)
    if diffs:
        print(f"configdoc: {len(diffs)} file(s) differ from {SCHEMA}; run `make docs`", file=sys.stderr)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
