"""Running MACS3 and exchanging tracks with it: the ``macs3`` command, bedGraph out and in, runs to bigWig.

MACS3 has no stable in-process API, so both MACS3 routes
(:mod:`atacdenoise.peaks.bdgpeakcall`, :mod:`atacdenoise.peaks.callpeak`) call
its command line through :func:`run_macs3` and exchange per-base tracks as
bedGraph files. MACS3 reads a bedGraph as consecutive runs: a missing stretch
takes the value of the *next* line, so every bedGraph written here covers every
base of the chromosome, zeros included.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import BigWigWriter
from atacdenoise.io.intervals import NARROWPEAK_COLUMNS, run_lengths

log = logging.getLogger(__name__)

#: rows per chunk when streaming a bedGraph back in
BEDGRAPH_CHUNK = 2_000_000

#: bases painted at a time when turning runs into bigWig entries
WINDOW = 10_000_000


class Macs3Error(InputError):
    """A ``macs3`` command failed; the message holds the command line and MACS3's stderr."""


def macs3_executable() -> str:
    """Path of the ``macs3`` command: on PATH, else beside the running Python (a venv's bin/)."""
    found = shutil.which("macs3") or shutil.which("macs3", path=str(Path(sys.executable).parent))
    if not found:
        raise InputError(
            "macs3 not found on PATH nor beside this Python; install it (pip install 'macs3>=3.0.4,<3.1') "
            "or activate the environment that has it"
        )
    return found


def run_macs3(args: list[str], cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run ``macs3 <args>``, logging the exact command line; raise :class:`Macs3Error` on failure.

    MACS3 logs progress to stderr; it is passed on at debug level (``-v``).
    """
    cmd = [macs3_executable(), *map(str, args)]
    log.info("running: %s", shlex.join(cmd))
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.stderr:
        log.debug("macs3 %s stderr:\n%s", args[0], proc.stderr.rstrip())
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise Macs3Error(f"macs3 {args[0]} failed (exit status {proc.returncode}): {shlex.join(cmd)}\n{tail}")
    return proc


def format_values(values: np.ndarray) -> np.ndarray:
    """Text of float32 values that MACS3 parses back to the same float32 (exact decimal of the value).

    Formats each distinct value once (coverage tracks have few), so the cost is
    in the number of distinct values, not of runs.
    """
    uniq, inverse = np.unique(np.asarray(values, dtype=np.float32), return_inverse=True)
    text = np.array([repr(float(u)) for u in uniq], dtype=object)
    return text[inverse]


def write_bedgraph(fh, chrom: str, values: np.ndarray) -> int:
    """Append one whole chromosome as bedGraph runs (zeros included) to an open text file.

    Parameters
    ----------
    fh : text file
        Opened for writing.
    chrom : str
        Chromosome name.
    values : float[n_bases]
        Per-base values from base 0 to the chromosome end.

    Returns
    -------
    int : number of lines written.
    """
    starts, ends, vals = run_lengths(np.asarray(values, dtype=np.float32))
    if starts.size == 0:
        return 0
    df = pd.DataFrame({"chrom": chrom, "start": starts, "end": ends, "value": format_values(vals)})
    df.to_csv(fh, sep="\t", header=False, index=False)
    return int(starts.size)


def iter_bedgraph(
    path: str | Path, chunksize: int = BEDGRAPH_CHUNK
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Stream a bedGraph chromosome by chromosome: ``(chrom, starts, ends, values)`` per chromosome.

    ``track``/``browser``/``#`` lines are skipped; the file must be grouped by
    chromosome (MACS3's are). Memory is bounded by the largest chromosome.
    """
    reader = pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=["chrom", "start", "end", "value"],
        usecols=[0, 1, 2, 3],
        dtype={"chrom": str, "start": np.int64, "end": np.int64, "value": np.float32},
        comment="#",
        chunksize=chunksize,
        skiprows=_header_lines(path),
    )
    current, parts = None, []
    seen: set[str] = set()
    for chunk in reader:
        names = chunk["chrom"].to_numpy()
        cuts = np.flatnonzero(names[1:] != names[:-1]) + 1
        for block in np.split(np.arange(len(chunk)), cuts):
            if block.size == 0:
                continue
            chrom = names[block[0]]
            if chrom != current:
                if current is not None:
                    yield (current, *_concat(parts))
                if chrom in seen:
                    raise InputError(f"{path}: bedGraph is not grouped by chromosome ({chrom} appears twice)")
                seen.add(chrom)
                current, parts = chrom, []
            sub = chunk.iloc[block]
            parts.append((sub["start"].to_numpy(), sub["end"].to_numpy(), sub["value"].to_numpy()))
    if current is not None:
        yield (current, *_concat(parts))


def _header_lines(path: str | Path) -> int:
    """Count the leading ``track``/``browser`` lines."""
    n = 0
    with open(path) as fh:
        for line in fh:
            if not line.startswith(("track", "browser")):
                break
            n += 1
    return n


def _concat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def runs_to_array(starts: np.ndarray, ends: np.ndarray, values: np.ndarray, length: int) -> np.ndarray:
    """Paint sorted, non-overlapping bedGraph runs into float32[length]; bases outside every run are 0, runs clipped."""
    out = np.zeros(length, dtype=np.float32)
    s = np.clip(np.asarray(starts, dtype=np.int64), 0, length)
    e = np.clip(np.asarray(ends, dtype=np.int64), 0, length)
    keep = e > s
    s, e, v = s[keep], e[keep], np.asarray(values, dtype=np.float32)[keep]
    lengths = e - s
    offsets = np.cumsum(lengths) - lengths
    pos = np.repeat(s - offsets, lengths) + np.arange(int(lengths.sum()))
    out[pos] = np.repeat(v, lengths)
    return out


def write_runs(
    writer: BigWigWriter, chrom: str, length: int, runs: tuple[np.ndarray, np.ndarray, np.ndarray], window: int = WINDOW
) -> None:
    """Add sorted, non-overlapping runs of one chromosome to a bigWig, painted window by window (bounded memory)."""
    starts, ends, values = (np.asarray(r) for r in runs)
    for w0 in range(0, length, window):
        w1 = min(w0 + window, length)
        lo, hi = np.searchsorted(ends, w0, side="right"), np.searchsorted(starts, w1, side="left")
        if hi > lo:
            writer.add(chrom, w0, runs_to_array(starts[lo:hi] - w0, ends[lo:hi] - w0, values[lo:hi], w1 - w0))


def bedgraph_to_bigwig(
    bdg: str | Path, sizes: dict[str, int], out: str | Path, workdir: str | Path, header: dict[str, int] | None = None
) -> dict[str, int]:
    """Convert a (MACS3) bedGraph into a bigWig of the chromosomes of ``sizes``, in the order of ``sizes``.

    Chromosomes not in ``sizes`` are skipped, runs past a chromosome end are
    clipped, bases without a run are 0 (not stored). The bedGraph is streamed
    and each chromosome parked in ``workdir`` as ``.npz`` runs, because MACS3
    sorts chromosomes by name while a bigWig wants the sizes order.

    ``header`` (default ``sizes``) lists the bigWig's chromosomes, a superset
    of ``sizes`` in the same order (e.g. the whole sizes file).

    Returns
    -------
    dict : chromosome -> runs read.
    """
    workdir = Path(workdir)
    parked: dict[str, Path] = {}
    for chrom, s, e, v in iter_bedgraph(bdg):
        if chrom not in sizes:
            log.debug("%s: %s not in the genome sizes, skipped", bdg, chrom)
            continue
        parked[chrom] = workdir / f"runs.{len(parked)}.npz"
        np.savez(parked[chrom], s=s, e=e, v=v)
    counts = {}
    with BigWigWriter(out, header or sizes) as writer:
        for chrom, length in sizes.items():
            if chrom not in parked:
                continue
            with np.load(parked[chrom]) as z:
                counts[chrom] = int(z["s"].size)
                write_runs(writer, chrom, length, (z["s"], z["e"], z["v"]))
            parked[chrom].unlink()
    return counts


def read_macs3_narrowpeak(path: str | Path, sizes: dict[str, int]) -> pd.DataFrame:
    """Read a MACS3 narrowPeak, restricted to ``sizes``, ends clipped to the chromosome, sorted in ``sizes`` order.

    MACS3 knows no chromosome lengths for BED input, so a peak can run past
    an end; it is clipped here.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=NARROWPEAK_COLUMNS)
    df = pd.read_csv(path, sep="\t", header=None, names=NARROWPEAK_COLUMNS, comment="#", dtype={"chrom": str})
    df = df[df["chrom"].isin(list(sizes))].copy()
    length = df["chrom"].map(sizes).astype(np.int64)
    df["start"] = df["start"].clip(lower=0)
    df["end"] = np.minimum(df["end"].to_numpy(), length.to_numpy())
    df = df[df["end"] > df["start"]]
    df["summit"] = np.minimum(df["summit"], df["end"] - df["start"] - 1)
    order = {c: i for i, c in enumerate(sizes)}
    df = df.assign(_o=df["chrom"].map(order)).sort_values(["_o", "start", "end"], kind="stable").drop(columns="_o")
    return df.reset_index(drop=True)
