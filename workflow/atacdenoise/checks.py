"""Up-front input checks: every bad input ends in one early, clear error, never deep in a rule.

The functions here are cheap (file headers, indexes, ``idxstats``, the first
lines of text files) so that ``atacdenoise check`` and the workflow's parse
step can run them on every input before any work starts. Each raises
:class:`~atacdenoise.errors.InputError` whose message names the file, the
problem and the fix. :func:`check_inputs` runs them for every row of a sample
sheet and reports *all* problems at once.

The subcommands repeat the relevant checks on their own inputs (see ``bam.py``,
``bigwig.py``, ``intervals.py``, ``fragments.py``, ``cells.py``), so a
subcommand run by hand is protected too.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing pandas costs ~0.3 s of every command's start
    import pandas as pd

import yaml

from atacdenoise.errors import InputError
from atacdenoise.io.text import READ_ERRORS, open_text

log = logging.getLogger(__name__)

#: sample and model names become folder names and shell words: a letter, digit or '_' first (not '.', '..', '-h'),
#: then letters, digits, '.', '_' and '-' (the same pattern as the schemas' and the workflow's wildcard_constraints)
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
#: data lines of a fragments file looked at by the quick check
FRAGMENT_HEAD_LINES = 1000
#: sheet columns that name input files
PATH_COLUMNS = ("path", "noisy", "peaks", "barcodes")
#: the workflow's schemas (workflow/schemas/, beside the package)
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
#: inputs the workflow itself makes when `simulate_cells` is configured (rule simulate_cells; same paths as common.smk)
FIXTURE_PATHS = ("results/fixture/cells.fragments.tsv.gz", "results/fixture/cells.barcodes.tsv")


#: file-name endings dropped when a real low-depth file names its depth label (``given-<name>``)
_INPUT_SUFFIXES = (".fragments.tsv.gz", ".fragments.tsv", ".tsv.gz", ".tsv", ".bam", ".bigwig", ".bw", ".gz")


def sheet_files(value: str) -> list[str]:
    """Split a sheet's ``path`` or ``noisy`` cell into its files (several files are separated by ``;``).

    Several ``path`` files are pooled into one deep reference (libraries,
    replicates, donors); several ``noisy`` files are one low-depth track each.
    """
    return [part.strip() for part in str(value).split(";") if part.strip()]


def given_labels(value: str) -> list[tuple[str, str]]:
    """Depth labels of a sample's real low-depth files: ``given`` for one file, ``given-<file name>`` for several.

    The name is the file's name without its directory and its usual endings,
    other characters than letters, digits and ``_`` turned into ``_`` (labels
    become parts of paths such as ``coverage/S/given-D2_a.rep1.bw``). Two files
    that give the same label are an :class:`InputError`.
    """
    files = sheet_files(value)
    if len(files) <= 1:
        return [("given", f) for f in files]
    labels = []
    for f in files:
        name = Path(f).name
        for suffix in _INPUT_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
        labels.append((f"given-{re.sub(r'[^A-Za-z0-9_]', '_', name)}", f))
    seen: dict[str, str] = {}
    for label, f in labels:
        if label in seen:
            raise InputError(f"noisy files {seen[label]!r} and {f!r} would both be depth {label!r}; rename one of them")
        seen[label] = f
    return labels


# --------------------------------------------------------------------------- outputs
def check_writable(path: str | os.PathLike, what: str = "output") -> None:
    """Raise unless ``path`` (a file to be written) can be created.

    It can when its nearest existing ancestor is a writable directory.

    Catches an output path under an existing regular file (``out.bw/sub/x.bw``),
    and a read-only results directory, before any work is done.
    """
    path = Path(path)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(
            f"{path}: cannot create the {what}: {parent} is a file, not a directory; "
            "choose another output path or move that file away"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(
            f"{path}: cannot create the {what}: directory {parent} is not writable; "
            "fix its permissions or choose another results directory"
        )
    if path.is_dir():
        raise InputError(f"{path}: the {what} path is an existing directory; remove it or choose another name")


# --------------------------------------------------------------------------- single files
def _exists(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(
            f"{path}: {what} not found; fix the path (relative paths are from the directory the workflow runs in)"
        )
    if path.is_dir():
        raise InputError(f"{path}: {what} is a directory, expected a file")


def check_bam_file(path: str | Path, sizes: dict[str, int]) -> dict[str, int]:
    """Sorted, indexed (index not stale), names and lengths match ``sizes``, reads mapped, proper pairs if paired.

    Returns the mapped reads per chromosome of ``sizes`` (from the index: an
    upper bound on the fragments a depth can ask for).
    """
    from atacdenoise.io.bam import check_bam, close_bam, mapped_per_chrom, open_bam

    path = Path(path)
    _exists(path, "BAM file")
    bam = open_bam(path)
    try:
        check_bam(bam, sizes, path)
        mapped = mapped_per_chrom(bam)
    finally:
        close_bam(bam)
    return {c: mapped.get(c, 0) for c in sizes}


def check_bigwig_file(path: str | Path, sizes: dict[str, int]) -> None:
    """Check that ``path`` is a readable bigWig holding every chromosome of ``sizes`` with the same lengths."""
    from atacdenoise.io.bigwig import check_bigwig

    path = Path(path)
    _exists(path, "bigWig")
    check_bigwig(path, sizes)


def check_peak_file(path: str | Path, genome: dict[str, int], what: str = "peak file") -> int:
    """Check that ``path`` is a BED/narrowPeak whose intervals lie on ``genome``; return the interval count.

    The file may be plain or gzip, with or without a track line.
    """
    from atacdenoise.io.intervals import read_narrowpeak

    path = Path(path)
    _exists(path, what)
    return len(read_narrowpeak(path, genome))


def check_fragments_head(path: str | Path, genome: dict[str, int], n: int = FRAGMENT_HEAD_LINES) -> None:
    """Check the first ``n`` data lines of a fragments file: 5 tab-separated columns, integers, names of ``genome``.

    The full validation (every line, chromosome ends) runs in the subcommands
    that read the whole file; this catches the usual mistakes (a BED, a wrong
    genome) in milliseconds.
    """
    from atacdenoise.io.fragments import _bad_line
    from atacdenoise.io.genome import check_chrom_names

    path = Path(path)
    _exists(path, "fragments file")
    chroms: set[str] = set()
    seen = 0
    try:
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip() or line.startswith("#"):
                    continue
                fields = line.rstrip("\n\r").split("\t")
                if len(fields) != 5:
                    raise _bad_line(path, lineno, line.rstrip("\n"), f"wrong number of columns ({len(fields)})")
                if not (fields[1].isdigit() and fields[2].isdigit() and fields[4].isdigit()):
                    raise _bad_line(path, lineno, line.rstrip("\n"), "start, end and count must be integers")
                if int(fields[2]) <= int(fields[1]):
                    raise _bad_line(path, lineno, line.rstrip("\n"), "expected start < end")
                chroms.add(fields[0])
                seen += 1
                if seen >= n:
                    break
    except READ_ERRORS as exc:
        raise InputError(
            f"{path}: cannot read ({type(exc).__name__}: {exc}); the file is truncated or damaged, or not a fragments "
            "file: copy it again or re-create it (gzip -t tests a gzip file)"
        ) from None
    if not seen:
        raise InputError(
            f"{path}: no fragments (only comments or blank lines); expected chrom, start, end, barcode, count lines"
        )
    check_chrom_names(chroms, genome, path)


def check_barcode_table(path: str | Path, cell_type: str, n_cells: Iterable[int] = ()) -> int:
    """Check a barcode table and return its number of ``cell_type`` cells.

    The table must be valid (no duplicates), have ``cell_type``, and at least max(``n_cells``) cells of it.
    """
    from atacdenoise.reads.cells import barcodes_of_type, read_barcode_table

    path = Path(path)
    table = read_barcode_table(path)
    n = int(barcodes_of_type(table, cell_type, path).size)
    wanted = max(n_cells, default=0)
    if wanted > n:
        raise InputError(
            f"{path}: config `cells` asks for {wanted:,} cells of type {cell_type!r} but the table has only {n:,}; "
            "lower `cells` in the config or use a table with more cells"
        )
    return n


# --------------------------------------------------------------------------- the sample sheet
def _sheet_problems(samples: pd.DataFrame, sheet: str) -> list[str]:
    problems = []
    missing = [c for c in ("sample", "cell_type", "kind", "path") if c not in samples.columns]
    if missing:
        return [
            f"{sheet}: missing column(s) {missing}; "
            "expected sample, cell_type, kind, path [, noisy, peaks, barcodes, role]"
        ]
    names = samples["sample"].astype(str)
    dup = sorted(names[names.duplicated()].unique())
    if dup:
        problems.append(f"{sheet}: duplicate sample names {dup}; every row needs a unique `sample`")
    return problems + sheet_name_problems(samples, sheet)


def check_inputs(
    samples: pd.DataFrame,
    config: dict,
    made_by_workflow: Callable[[str], bool] | None = None,
    results: str | Path | None = "results",
) -> None:
    """Run the cheap checks on every input of a sample sheet; raise one ``InputError`` listing all problems.

    Parameters
    ----------
    samples : DataFrame
        The sample sheet (columns sample, cell_type, kind, path and optional
        noisy, peaks, barcodes, role; empty cells as "" or NaN).
    config : dict
        The workflow config (``genome.sizes`` required; ``genome.chroms``,
        ``genome.exclude``, ``genome.blacklist``, ``genome.tss``, ``depths``, ``cells``,
        ``model.pretrained`` used when present).
    made_by_workflow : callable or None
        Paths for which it returns True are made by a rule and are not
        checked; default: the simulated fixture's paths (``FIXTURE_PATHS``)
        when ``simulate_cells`` is configured.
    results : str, Path or None
        The results directory, checked to be creatable and writable (None: not checked).

    Raises
    ------
    InputError
        One message, one line per problem, each naming the file and the fix.
    """
    from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms

    sheet = str(config.get("samples", "sample sheet"))
    simulate = config.get("simulate_cells") or {}
    made = made_by_workflow or (lambda p: bool(simulate) and p in FIXTURE_PATHS)
    problems: list[str] = []

    def attempt(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            problems.append(str(exc))
        return None

    gconf = config.get("genome") or {}
    genome = attempt(read_chrom_sizes, gconf.get("sizes", "<genome.sizes not set>"))
    sizes = None
    if genome is not None:
        exclude = gconf.get("exclude", DEFAULT_EXCLUDE)
        sizes = attempt(select_chroms, genome, include=gconf.get("chroms"), exclude_regex=exclude or None)
        if gconf.get("blacklist"):
            attempt(check_peak_file, gconf["blacklist"], genome)
        if gconf.get("regions") and sizes is not None:
            from atacdenoise.io.regions import read_target_regions

            attempt(read_target_regions, gconf["regions"], sizes)
        if gconf.get("tss"):
            attempt(check_peak_file, gconf["tss"], genome, what="TSS BED (genome.tss)")
    if simulate.get("bam") and sizes is not None:
        attempt(check_bam_file, simulate["bam"], sizes)
    pretrained = (config.get("model") or {}).get("pretrained")
    if pretrained and not Path(pretrained).is_file():
        problems.append(
            f"{pretrained}: model.pretrained file not found; "
            "fix the path or set model.pretrained: null to train a model"
        )

    samples = samples.copy()
    samples.columns = [str(c).strip() for c in samples.columns]
    problems += _sheet_problems(samples, sheet)
    if "path" in samples.columns and "kind" in samples.columns:
        depths = [int(d) for d in config.get("depths") or []]
        cells = [int(c) for c in config.get("cells") or []]
        for _, row in samples.fillna("").astype(str).iterrows():
            problems += _row_problems(row, sheet, genome, sizes, depths, cells, made)
    if results is not None:
        attempt(check_writable, Path(results) / "any-output", "results")
    if problems:
        raise InputError(
            f"{len(problems)} problem(s) with the inputs of {sheet}:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    log.info("%s: %d sample(s) checked", sheet, len(samples))


def _pool_problems(sample: str, kind: str, role: str, pooled: list[str], noisy: list[str], sheet: str) -> list[str]:
    """Problems of a pooled reference: a pool of bigWigs, a pool for role apply, a noisy library inside its pool."""
    problems = []
    if len(pooled) > 1 and kind == "bigwig":
        problems.append(
            f"sample {sample}: several `path` files are pooled from reads; kind bigwig cannot be pooled "
            f"(give BAM or fragments files, or one bigWig); fix {sheet}"
        )
    if len(pooled) > 1 and role == "apply":
        problems.append(
            f"sample {sample}: role apply takes one low-depth file in `path`, not a pool of {len(pooled)}; fix {sheet}"
        )
    resolved = {str(Path(p).resolve()): p for p in pooled}
    for f in noisy:
        if str(Path(f).resolve()) in resolved:
            problems.append(
                f"sample {sample}: noisy file {f!r} is also in the pooled reference (`path`): it would be scored "
                "against a reference made partly of itself, inflating every metric; leave it out of `path` "
                f"(e.g. pool the other donors' libraries) in {sheet}"
            )
    return problems


def _row_problems(row, sheet, genome, sizes, depths, cells, made) -> list[str]:
    problems: list[str] = []
    sample, kind, role = row.get("sample", "?"), row.get("kind", ""), row.get("role", "") or "train"

    def attempt(fn, *args):
        try:
            return fn(*args)
        except InputError as exc:
            problems.append(f"sample {sample}: {exc}")
        return None

    for col in PATH_COLUMNS:
        for value in sheet_files(row.get(col, "")) if col in ("path", "noisy") else [row.get(col, "")]:
            if value and not made(value) and not Path(value).exists():
                problems.append(
                    f"sample {sample}: {col} file {value!r} not found "
                    f"(paths are relative to the directory the workflow runs in); fix {sheet}"
                )
    attempt(given_labels, row.get("noisy", ""))
    if kind not in ("bam", "fragments", "bigwig"):
        problems.append(f"sample {sample}: kind {kind!r} is not one of bam, fragments, bigwig; fix {sheet}")
        return problems
    pooled = sheet_files(row.get("path", ""))
    problems += _pool_problems(sample, kind, role, pooled, sheet_files(row.get("noisy", "")), sheet)
    if genome is None or sizes is None:
        return problems  # already reported: no genome to check against
    pool_total = 0
    for col, value in [*(("path", f) for f in pooled), *(("noisy", f) for f in sheet_files(row.get("noisy", "")))]:
        if not value or made(value) or not Path(value).exists():
            continue
        if kind == "bam":
            mapped = attempt(check_bam_file, value, sizes)
            if mapped is not None and col == "path":
                pool_total += sum(mapped.values())
        elif kind == "fragments":
            attempt(check_fragments_head, value, genome)
        else:
            attempt(check_bigwig_file, value, sizes)
    if kind == "bam" and role != "apply" and depths and pool_total and max(depths) > pool_total:
        problems.append(
            f"sample {sample}: {'; '.join(pooled)}: config `depths` asks for {max(depths):,} fragments but "
            f"{'the pooled BAMs have' if len(pooled) > 1 else 'the BAM has'} only {pool_total:,} mapped reads on the "
            "selected chromosomes; lower `depths` or use a deeper input"
        )
    peaks = row.get("peaks", "")
    if peaks and not made(peaks) and Path(peaks).exists():
        attempt(check_peak_file, peaks, genome)
    barcodes = row.get("barcodes", "")
    if barcodes and not made(barcodes) and Path(barcodes).exists():
        attempt(check_barcode_table, barcodes, row.get("cell_type", ""), cells)
    return problems


# --------------------------------------------------------------------------- names and paths that reach a shell
def name_problem(name: str, what: str = "sample name") -> str | None:
    """Say why ``name`` cannot be a sample or model name; None when it can.

    Such names become folder names (``results/coverage/{sample}/``) and words
    of shell commands: ``.`` and ``..`` would put files outside their folder,
    a leading ``-`` is read as an option, ``/`` and whitespace split paths and
    words. Only :data:`SAFE_NAME` is accepted.
    """
    if SAFE_NAME.match(name):
        return None
    if name in (".", ".."):
        why = "is a folder name of its own ('.' the folder, '..' its parent): its files would land outside their folder"
    elif name.startswith("-"):
        why = "starts with '-': commands would read it as an option"
    elif name.startswith("."):
        why = "starts with '.': its files would be hidden"
    elif "/" in name or "\\" in name:
        why = "contains a path separator"
    elif not name:
        why = "is empty"
    elif any(c.isspace() for c in name):
        why = "contains whitespace"
    else:
        bad = "".join(sorted({c for c in name if not re.match(r"[A-Za-z0-9._-]", c)}))
        why = f"contains {bad!r}"
    return (
        f"{what} {name!r} is unsafe in file paths and shell commands: it {why}; use letters, digits, '.', '_' and '-' "
        "only, starting with a letter, a digit or '_'"
    )


def sheet_name_problems(samples: pd.DataFrame, sheet: str) -> list[str]:
    """Unsafe sample names (:func:`name_problem`) and input paths that start with '-' (read as options) of a sheet."""
    problems = []
    for i, row in enumerate(samples.fillna("").astype(str).to_dict(orient="records")):
        name = row.get("sample", "")
        problem = name_problem(name)
        if problem:
            problems.append(f"{sheet}: {problem}")
        for col in PATH_COLUMNS:
            for value in sheet_files(row.get(col, "")):
                if value.startswith("-"):
                    problems.append(
                        f"{sheet}, row {i + 2} (sample {name!r}): {col} file {value!r} starts with '-', which commands "
                        f"would read as an option; write it as './{value}'"
                    )
    return problems


def config_name_problems(config: dict, source: str = "config") -> list[str]:
    """Unsafe ``model.name`` of a config (:func:`name_problem`), said more clearly than the schema's pattern does."""
    model = config.get("model") if isinstance(config, dict) else None
    name = model.get("name") if isinstance(model, dict) else None
    problem = name_problem(name, "model.name") if isinstance(name, str) else None
    return [f"{source}: {problem}"] if problem else []


def check_sheet_path(path: str | os.PathLike) -> Path:
    """Return the sample sheet's path; raise an InputError naming where it was looked for when it is not a file.

    A relative ``samples:`` path is read from the directory snakemake runs in
    (``--directory``), not from the config file's folder: the message names
    both the resolved path and that directory.
    """
    path = Path(path)
    if path.is_file():
        return path
    cwd = Path.cwd()
    found = "is a directory, not a file" if path.is_dir() else "not found"
    where = f" (looked for {path.resolve()}: relative paths are read from the working directory {cwd})"
    raise InputError(
        f"{path}: sample sheet {found}{'' if path.is_absolute() else where}; fix `samples` in the config "
        "(an absolute path works from any directory) or run snakemake from, or with --directory set to, the folder "
        "that the relative paths of the config and the sheet start from"
    )


# --------------------------------------------------------------------------- commands the jobs run
#: commands of the workflow's jobs: every rule runs ``atacdenoise`` by name; atacdenoise runs MACS3 (peaks,
#: callpeak) and deepTools' computeMatrix and plotHeatmap (plots heatmap), found on PATH or beside its Python
WORKFLOW_TOOLS = ("atacdenoise", "macs3", "computeMatrix", "plotHeatmap")


def missing_tools(tools: Iterable[str] = WORKFLOW_TOOLS, path: str | None = None) -> list[str]:
    """Return the commands of ``tools`` that the workflow's jobs would not find (``path``: default ``$PATH``).

    ``atacdenoise`` must be on PATH (the rules' shell commands name it); the
    others may also sit beside it, where atacdenoise finds them (its venv's ``bin/``).
    """
    import shutil

    main = shutil.which("atacdenoise", path=path)
    beside = str(Path(main).resolve().parent) if main else None  # a venv's bin/, also when linked from elsewhere
    return [
        t
        for t in tools
        if not shutil.which(t, path=path) and not (t != "atacdenoise" and beside and shutil.which(t, path=beside))
    ]


def tools_problem(
    tools: Iterable[str] = WORKFLOW_TOOLS, path: str | None = None, env_bin: Path | None = None
) -> str | None:
    """Say which commands of the workflow's jobs are not on PATH and how to fix it; None when all are found.

    ``env_bin`` is the ``bin/`` of the environment snakemake runs from
    (default: beside this Python): when the commands are there, the fix is to
    activate that environment rather than to install anything.
    """
    missing = missing_tools(tools, path)
    if not missing:
        return None
    env_bin = env_bin or Path(sys.executable).parent
    head = (
        f"command(s) {', '.join(missing)} not found on PATH, so every job would fail with exit status 127 "
        "('command not found')"
    )
    if all((env_bin / t).exists() for t in missing):
        activate = env_bin / "activate"
        fix = (
            f"they are in {env_bin}, the environment this snakemake runs from, which is not on PATH: activate it "
            f"(`source {activate}`) and run snakemake again, or run through make (`make demo` puts the project's "
            f".venv/bin on PATH), or add it to PATH (`export PATH={env_bin}:$PATH`)"
        )
    else:
        fix = (
            "install the project and its tools (`make venv`, i.e. pip install -e '.[workflow]' in a Python >= 3.11 "
            "venv), activate that environment (`source .venv/bin/activate`) and run snakemake again, "
            "or let snakemake build the rules' conda environment (`--sdm conda`)"
        )
    return f"{head}; {fix}"


# --------------------------------------------------------------------------- config and sample sheet
def load_yaml(path: Path, what: str) -> dict:
    """Read a YAML mapping (a config file); a missing file, bad syntax or a non-mapping is an InputError."""
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of config keys, found {type(data).__name__}")
    return data


def _key_path(parts: Iterable) -> str:
    return ".".join(str(p) for p in parts) or "the top level"


def schema_problems(data: dict, schema: dict, source: str) -> list[str]:
    """One line per schema violation: the file, the key path and what is wrong (unknown keys named)."""
    from jsonschema import Draft202012Validator

    problems = []
    validator = Draft202012Validator(schema)
    for err in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        where = _key_path(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = sorted((err.schema.get("properties") or {}).keys())
            for key in sorted(set(err.instance) - set(allowed)):
                full = _key_path([*err.absolute_path, key])
                problems.append(
                    f"{source}: unknown key {full!r} (allowed at {where}: {', '.join(allowed)}); "
                    "fix the spelling or remove it"
                )
        else:
            problems.append(f"{source}: key {where}: {err.message}")
    return problems


def apply_defaults(data: dict, schema: dict) -> dict:
    """Fill the schema's defaults into ``data`` (recursively into objects), as the workflow's validation does."""
    for key, sub in (schema.get("properties") or {}).items():
        if key not in data and "default" in sub:
            data[key] = yaml.safe_load(yaml.safe_dump(sub["default"]))
        if isinstance(data.get(key), dict) and sub.get("type") in ("object", ["object", "null"]):
            apply_defaults(data[key], sub)
    return data


def read_sheet(path: Path) -> pd.DataFrame:
    """Read the sample sheet as strings, empty cells as ''."""
    import pandas as pd  # here, not at the top: it costs every command ~0.3 s of start-up

    check_sheet_path(path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, comment="#").fillna("")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable tab-separated sample sheet ({str(exc).strip()[:200]})") from None
    df.columns = df.columns.str.strip()
    return df


def sheet_problems(df: pd.DataFrame, schema: dict, source: str) -> list[str]:
    """List the schema violations of each row (empty cells count as absent), naming the row and the column."""
    problems = []
    for i, row in enumerate(df.to_dict(orient="records")):
        values = {k: v for k, v in row.items() if v != ""}
        for line in schema_problems(values, schema, f"{source}, row {i + 2} (sample {row.get('sample', '?')!r})"):
            if ("key sample:" in line and "does not match" in line) or "key kind:" in line:
                continue  # reported, with the fix, by check_inputs
            problems.append(line)
    return problems


def check_config_and_inputs(
    config_path: Path, samples: Path | None = None, schemas: Path = SCHEMAS
) -> tuple[dict, int, int]:
    """Validate a config and its sample sheet against the schemas, then every input.

    Returns (config, rows of the sheet, warnings logged). The config is
    validated first (its problems alone are reported, since the sheet's
    location depends on it), then the sheet's rows and the input files
    together: all problems in one :class:`InputError`, one line each. ``samples``
    overrides the config's ``samples``. The returned config has the schema's
    defaults filled in. Warnings (data covering only parts of chromosomes,
    :func:`partial_coverage_warnings`) are logged, not raised.
    """
    config_schema = yaml.safe_load((schemas / "config.schema.yaml").read_text())
    sample_schema = yaml.safe_load((schemas / "samples.schema.yaml").read_text())
    config = load_yaml(config_path, "config file")
    problems = config_name_problems(config, str(config_path))
    problems += [
        p
        for p in schema_problems(config, config_schema, str(config_path))
        if not (problems and "key model.name:" in p)  # said more clearly by config_name_problems
    ]
    if problems:
        raise InputError(f"{len(problems)} problem(s) in the config:\n" + "\n".join(f"  - {p}" for p in problems))
    config = apply_defaults(config, config_schema)
    sheet = samples or Path(config.get("samples", "config/samples.tsv"))
    config["samples"] = str(sheet)
    df = read_sheet(sheet)
    problems = sheet_problems(df, sample_schema, str(sheet))
    try:
        check_inputs(df, config)
    except InputError as exc:
        lines = str(exc).splitlines()
        problems += [line.removeprefix("  - ") for line in lines[1:]] or lines
    if problems:
        raise InputError(
            f"{len(problems)} problem(s) with the inputs of {sheet}:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    warnings = partial_coverage_warnings(df, config)
    for warning in warnings:
        log.warning("%s", warning)
    return config, len(df), len(warnings)


def defaulted_keys(given: dict, filled: dict, prefix: str = "") -> dict[str, object]:
    """Return the dotted keys of ``filled`` that ``given`` lacks, with their values (the defaults a run took).

    ``given`` is the config as the user's files set it, ``filled`` the same after
    validation filled in the schema's defaults. A whole missing section is listed
    key by key, so the log names every value that was not chosen.
    """
    out: dict[str, object] = {}
    for key, value in filled.items():
        name = f"{prefix}{key}"
        if key not in given:
            if isinstance(value, dict) and value:
                out.update(defaulted_keys({}, value, f"{name}."))
            else:
                out[name] = value
        elif isinstance(value, dict) and isinstance(given[key], dict):
            out.update(defaulted_keys(given[key], value, f"{name}."))
    return out


# --------------------------------------------------------------------------- partial coverage

#: probes per chromosome, and their width (bases), for the partial-coverage check
PROBES, PROBE_BP = 64, 10_000
#: a probe with data is "dense" at this mean count per probe (2 per kb: under uniform coverage, no probe is empty)
DENSE_PER_PROBE = 20


def probe_counts(path: str | Path, kind: str, sizes: dict[str, int]) -> dict[str, list[int]] | None:
    """Count reads (BAM) or fragments (tabix-indexed fragments file) in :data:`PROBES` evenly spaced windows.

    Index queries only, so a whole genome costs about a second. Returns chromosome
    -> counts, or None when the file has no index to query (plain or gzip text).
    A damaged file or index is an :class:`InputError` (:func:`_probe_damaged`).
    """
    try:
        return _probe_counts(path, kind, sizes)
    except InputError:
        raise
    except (OSError, ValueError, NotImplementedError) as exc:  # what pysam raises on a damaged file or index
        raise _probe_damaged(path, kind, exc) from None


def _probe_damaged(path: str | Path, kind: str, exc: Exception) -> InputError:
    """Return the error for a BAM or tabix-indexed fragments file whose index queries fail: damaged or truncated."""
    fix = f"samtools index {path}" if kind == "bam" else f"tabix -p bed {path}"
    return InputError(
        f"{path}: index queries fail ({type(exc).__name__}: {exc}); the file or its index is damaged or truncated: "
        f"copy it again or re-create it, and re-index it ({fix})"
    )


def _probe_counts(path: str | Path, kind: str, sizes: dict[str, int]) -> dict[str, list[int]] | None:
    """Do the work of :func:`probe_counts`, with each index checked before htslib loads it."""
    import pysam

    from atacdenoise.io.bam import check_index, check_index_files, close_bam

    def windows(length: int) -> list[tuple[int, int]]:
        centres = [int((i + 0.5) * length / PROBES) for i in range(PROBES)]
        return [(max(0, c - PROBE_BP // 2), min(length, c + PROBE_BP // 2)) for c in centres]

    out: dict[str, list[int]] = {}
    if kind == "bam":
        check_index_files(path)
        bam = pysam.AlignmentFile(str(path), "rb")
        try:
            known = set(bam.references)
            for chrom, length in sizes.items():
                if chrom in known:
                    out[chrom] = [bam.count(chrom, s, e) for s, e in windows(length)]
        finally:
            close_bam(bam)  # htslib repeats a read error on closing: keep the first
        return out
    if kind == "fragments" and (Path(f"{path}.tbi").exists() or Path(f"{path}.csi").exists()):
        for index in (Path(f"{path}.tbi"), Path(f"{path}.csi")):
            if index.is_file():
                check_index(index, path, f"tabix -p bed {path}")
        with pysam.TabixFile(str(path)) as tbx:
            known = set(tbx.contigs)
            for chrom, length in sizes.items():
                if chrom in known:
                    out[chrom] = [sum(1 for _ in tbx.fetch(chrom, s, e)) for s, e in windows(length)]
        return out
    return None


def partial_coverage(counts: dict[str, list[int]]) -> dict[str, tuple[int, int]]:
    """Chromosomes whose data cover only part of them: chromosome -> (probes with data, probes).

    Partial means more than half of the probes are empty while those with data
    are dense (:data:`DENSE_PER_PROBE`): with that density spread over the whole
    chromosome, no probe would be empty.
    """
    out = {}
    for chrom, c in counts.items():
        hit = [n for n in c if n > 0]
        if hit and len(hit) < len(c) / 2 and sum(hit) / len(hit) >= DENSE_PER_PROBE:
            out[chrom] = (len(hit), len(c))
    return out


def partial_coverage_warnings(samples: pd.DataFrame, config: dict) -> list[str]:
    """One warning per input file whose data cover only parts of its chromosomes (say where, and the fix).

    MACS3's flat λ of the label route is a chromosome's mean coverage; on data
    covering a few windows of a chromosome it is far too low there, and the
    labels become far too many peaks.
    """
    from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms

    gconf = config.get("genome") or {}
    if gconf.get("regions"):
        return []  # λ and every other stage are taken over the target regions
    genome = read_chrom_sizes(gconf["sizes"])
    sizes = select_chroms(
        genome, include=gconf.get("chroms"), exclude_regex=gconf.get("exclude", DEFAULT_EXCLUDE) or None
    )
    warnings = []
    for _, row in samples.fillna("").astype(str).iterrows():
        for path in [*sheet_files(row.get("path", "")), *sheet_files(row.get("noisy", ""))]:
            if not path or not Path(path).is_file() or row.get("kind") not in ("bam", "fragments"):
                continue
            counts = probe_counts(path, row["kind"], sizes)
            partial = partial_coverage(counts or {})
            if partial:
                shown = ", ".join(f"{c} ({h} of {n} probes)" for c, (h, n) in list(partial.items())[:6])
                more = f" and {len(partial) - 6} more" if len(partial) > 6 else ""
                warnings.append(
                    f"{path}: data cover only parts of {len(partial)} chromosome(s): {shown}{more} have data in "
                    f"fewer than half of {PROBES} evenly spaced {PROBE_BP // 1000}-kb probes, densely where they do. "
                    "MACS3's flat lambda (the chromosome's mean coverage) is then far too low inside the covered "
                    "windows: give peaks.labels.lambda per chromosome (atacdenoise fit-lambda) or "
                    "peaks.labels.lambda_scale, or give the covered windows as genome.regions (every stage is then "
                    "restricted to them)"
                )
    return warnings
