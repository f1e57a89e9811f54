"""Chromosome sizes, chromosome-name checks and genomic regions."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from atacdenoise.errors import InputError

#: chromosomes dropped by default: mitochondria and unplaced/alt/random contigs
DEFAULT_EXCLUDE = r"^(chrM|chrMT|M|MT)$|_|^chrUn|^Un|^(chr)?EBV$|^GL|^KI|^JH"


@dataclass(frozen=True)
class Region:
    """A half-open 0-based interval ``[start, end)`` on ``chrom``."""

    chrom: str
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{self.chrom}:{self.start}-{self.end}"


def read_chrom_sizes(path: str | Path) -> dict[str, int]:
    """Read a two-column ``chrom<TAB>length`` file, keeping file order."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: chromosome sizes file not found; set genome.sizes in the config to an existing file")
    sizes: dict[str, int] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 2 or not fields[1].isdigit() or int(fields[1]) <= 0:
            raise InputError(
                f"{path}, line {n}: expected 'chrom<TAB>length' with a positive integer length, found {line!r}"
            )
        if fields[0] in sizes:
            raise InputError(f"{path}, line {n}: chromosome {fields[0]!r} listed twice")
        if "/" in fields[0] or fields[0].startswith((".", "-")):
            # chromosome names become file names (a dataset's CHROM.noisy.npy): '../x' would escape its folder
            raise InputError(
                f"{path}, line {n}: chromosome name {fields[0]!r} contains '/' or starts with '.' or '-'; "
                "chromosome names become file names: rename it in the sizes file and in the inputs"
            )
        sizes[fields[0]] = int(fields[1])
    if not sizes:
        raise InputError(f"{path}: no chromosomes found; expected 'chrom<TAB>length' lines")
    return sizes


def select_chroms(
    sizes: dict[str, int], include: Iterable[str] | None = None, exclude_regex: str | None = DEFAULT_EXCLUDE
) -> dict[str, int]:
    """Keep the chromosomes named in ``include`` (all if None) that do not match ``exclude_regex``."""
    if include is not None:
        include = list(include)
        missing = [c for c in include if c not in sizes]
        if missing:
            raise InputError(
                f"chromosomes {missing} are not in the sizes file (it has {_preview(sizes)}); "
                "fix genome.chroms in the config"
            )
        sizes = {c: sizes[c] for c in include}
    if not sizes:
        raise InputError("no chromosomes selected: genome.chroms is empty; list chromosomes or remove the key")
    if exclude_regex:
        pattern = re.compile(exclude_regex)
        dropped = {c: m.group(0) for c in sizes if (m := pattern.search(c))}
        if len(dropped) == len(sizes):
            shown = ", ".join(f"{c} (matched {hit!r})" for c, hit in list(dropped.items())[:5])
            more = f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
            raise InputError(
                f"no chromosomes left: genome.exclude {exclude_regex!r} drops every one of the {len(dropped)} "
                f"chromosome(s) of the selection: {shown}{more}; set genome.exclude to a pattern that keeps yours "
                "(e.g. '^chrM$' if only chrM should go) or to '' to keep them all"
            )
        sizes = {c: n for c, n in sizes.items() if c not in dropped}
    return sizes


def _preview(names: Iterable[str], k: int = 5) -> str:
    names = list(names)
    return ", ".join(names[:k]) + (f", ... ({len(names)} in all)" if len(names) > k else "")


def naming_hint(found: Iterable[str], expected: Iterable[str]) -> str:
    """Explain a ``1`` vs ``chr1`` style mismatch, or '' when there is none."""
    found, expected = set(found), set(expected)
    if {f"chr{c}" for c in found} & expected:
        return (
            " The file names chromosomes without the 'chr' prefix (1, 2, ...) but the sizes file uses chr1, chr2, ...: "
            "use a sizes file of the same naming (e.g. Ensembl) or rename the chromosomes (e.g. samtools reheader)."
        )
    if {c.removeprefix("chr") for c in found if c.startswith("chr")} & expected:
        return (
            " The file names chromosomes with a 'chr' prefix (chr1, ...) but the sizes file does not (1, ...): "
            "use a UCSC-style sizes file (resources/genomes/) or rename the chromosomes."
        )
    return ""


def check_chrom_names(found: Iterable[str], sizes: dict[str, int], source: str | Path) -> list[str]:
    """Return the chromosomes of ``sizes`` present in ``found``; raise when there are none."""
    found = list(found)
    shared = [c for c in sizes if c in set(found)]
    if not shared:
        raise InputError(
            f"{source}: none of its chromosomes ({_preview(found)}) are in the genome sizes file ({_preview(sizes)})."
            + naming_hint(found, sizes)
        )
    return shared


def check_chrom_lengths(found: dict[str, int], sizes: dict[str, int], source: str | Path) -> None:
    """Raise when a chromosome in both has a different length (another assembly)."""
    bad = [(c, found[c], n) for c, n in sizes.items() if c in found and found[c] != n]
    if bad:
        c, f, n = bad[0]
        raise InputError(
            f"{source}: chromosome {c} is {f:,} bp long there but {n:,} bp in the genome sizes file "
            f"({len(bad)} chromosome(s) differ); the file was made on another assembly: use the matching genome.sizes"
        )


_REGION = re.compile(r"^(?P<chrom>[^:\s]+)(?::(?P<start>[\d,]+)-(?P<end>[\d,]+))?$")


def parse_region(text: str, sizes: dict[str, int]) -> Region:
    """Parse ``chrom`` or ``chrom:start-end`` (0-based, half-open) against the genome."""
    m = _REGION.match(text.strip())
    if not m:
        raise InputError(f"region {text!r}: expected 'chrom' or 'chrom:start-end'")
    chrom = m["chrom"]
    if chrom not in sizes:
        raise InputError(
            f"region {text!r}: chromosome {chrom} is not among the genome's chromosomes ({_preview(sizes)})"
        )
    start = int(m["start"].replace(",", "")) if m["start"] else 0
    end = int(m["end"].replace(",", "")) if m["end"] else sizes[chrom]
    if not 0 <= start < end <= sizes[chrom]:
        raise InputError(f"region {text!r}: expected 0 <= start < end <= {sizes[chrom]:,} (length of {chrom})")
    return Region(chrom, start, end)
