"""Shared helpers of the benchmark scripts: timing, peak memory, synthetic inputs, machine description, tables.

Every script measures our implementation and a named peer *in the same run, on
the same input*, ``--runs`` times each (default 3), and prints a Markdown table
of medians, the speed ratio and peak memory. Wall time comes from the parent
(``time.perf_counter`` around the child process, start-up included); peak memory
is the largest summed RSS of the child's whole process tree, sampled every
20 ms with psutil (multi-process peers such as ``bamCoverage -p`` count all
their workers), and never less than the kernel's own ``ru_maxrss`` of the
largest single process (``os.wait4``), which catches peaks between samples.

Headline ratios are whole command against whole command: each side a fresh
process, start-up included, wall time from the parent, on the same input, with
the same threads and pinned to the same number of cores (``cores=`` of
:func:`run_cmd`: the first N CPUs this process may use), and written at the
same compression level where files are written. In-process figures (a function
timed inside a fresh Python process, start-up excluded) come from
:func:`run_python`, which runs a snippet in a child process that prints its own
timing as JSON on its last line; they are a second column, never the headline.
Every table states its threads, compression level and deflate library
(``settings`` of :func:`report`; :func:`deflate_libraries`).

Inputs are cached under ``--cache`` (default ``$TMPDIR/atacdenoise-bench``)
so a second run does not regenerate them; synthetic inputs use real chromosome
sizes (``../shared/data/genomes/hg38.auto.sizes`` or the copy in
``resources/``) and a fixed seed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
VENV_BIN = REPO / ".venv" / "bin"


# --------------------------------------------------------------------------- command-line plumbing


def base_parser(description: str) -> argparse.ArgumentParser:
    """Options every benchmark script takes."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="repetitions per measurement (the median is reported)")
    p.add_argument(
        "--threads", type=int, default=min(2, len(os.sched_getaffinity(0))), help="threads given to both tools"
    )
    p.add_argument("--quick", action="store_true", help="small sizes only (a smoke run of the script)")
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "atacdenoise-bench",
        help="where generated inputs are kept",
    )
    p.add_argument("--json", type=Path, default=None, help="also write all measurements to this JSON file")
    return p


def python_exe() -> str:
    """Return the Python that runs the benchmark (the project's venv when run with it)."""
    return sys.executable


def infer_argv(model: Path, bw: Path, sizes: Path, prefix: Path, *options: object) -> list[str]:
    """Return ``atacdenoise infer`` of ``model`` on the bigWig ``bw``, writing ``prefix``.*, then ``options``."""
    cmd = [python_exe(), "-m", "atacdenoise.cli", "infer", "--model", str(model), "--input", str(bw)]
    return [*cmd, "--sizes", str(sizes), "--out-prefix", str(prefix), *map(str, options)]


def tool(name: str, hint: str) -> str:
    """Path of a command-line tool: the venv's bin first, then PATH; exits with ``hint`` when missing."""
    for cand in (VENV_BIN / name, Path(sys.executable).parent / name):
        if cand.exists():
            return str(cand)
    found = shutil.which(name)
    if found:
        return found
    sys.exit(f"{name} not found: {hint}")


def chrom_sizes_file(name: str = "hg38.auto.sizes") -> Path:
    """Find a real chromosome sizes file (shared data, else resources/)."""
    for cand in (SHARED / "genomes" / name, REPO / "resources" / "genomes" / name):
        if cand.exists():
            return cand
    sys.exit(f"chromosome sizes {name} not found under {SHARED / 'genomes'} or resources/genomes")


def read_sizes(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            c, n = line.split()[:2]
            out[c] = int(n)
    return out


def write_sizes(sizes: dict[str, int], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{c}\t{n}\n" for c, n in sizes.items()))
    return path


def genome_prefix(sizes: dict[str, int], bases: int) -> dict[str, int]:
    """Return the leading chromosomes of ``sizes`` covering about ``bases`` (the last one cut to fit).

    The names and order are the real ones.
    """
    out: dict[str, int] = {}
    left = int(bases)
    for c, n in sizes.items():
        if left <= 0:
            break
        out[c] = min(n, left)
        left -= out[c]
    return out


# --------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    """One run: wall seconds, peak RSS (bytes), optional in-child seconds and extra values."""

    wall: float
    rss: int
    inner: float | None = None
    extra: dict = field(default_factory=dict)


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def cpus(n: int) -> set[int]:
    """Return the first ``n`` CPUs this process may run on (all of them when it has fewer)."""
    allowed = sorted(os.sched_getaffinity(0))
    if n < 1:
        raise ValueError(f"cores {n}: expected >= 1")
    return set(allowed[:n])


def run_cmd(
    cmd: list[str] | str,
    *,
    env: dict | None = None,
    cwd: Path | None = None,
    shell: bool = False,
    capture: bool = True,
    check: bool = True,
    cores: int | None = None,
) -> tuple[Sample, str]:
    """Run one command; return its wall time and peak memory, and its stdout (stderr on failure).

    ``cores``: pin the command (and every process it starts) to the first ``cores``
    CPUs of :func:`cpus`, so both sides of a ratio run on as many cores as threads.
    """
    try:
        import psutil
    except ImportError:  # the plain rusage figure only
        psutil = None
    full_env = {**os.environ, **(env or {})}
    # GNU time's own ru_maxrss of the command: the kernel's peak of the largest single process. A plain
    # fork from this (large) Python would count this process's pages until exec, so use it when present.
    gnu_time = shutil.which("time") if Path("/usr/bin/time").exists() else None
    rss_fd, rss_name = tempfile.mkstemp(suffix=".rss")
    os.close(rss_fd)
    if gnu_time:
        cmd = [gnu_time, "-q", "-f", "%M", "-o", rss_name, *(["sh", "-c", cmd] if shell else cmd)]
        shell = False
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        t0 = time.perf_counter()
        pin = None if cores is None else cpus(cores)
        p = subprocess.Popen(
            cmd,
            shell=shell,
            env=full_env,
            cwd=cwd,
            stdout=out_f if capture else None,
            stderr=err_f,
            preexec_fn=None if pin is None else (lambda: os.sched_setaffinity(0, pin)),
        )
        ps = psutil.Process(p.pid) if psutil is not None else None
        peak = 0
        while True:  # sample the tree's RSS until the child ends; wait4 gives its own exact peak
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if ps is not None:
                peak = max(peak, _tree_rss(ps))
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(ValueError, IndexError):
            peak = (
                max(peak, int(Path(rss_name).read_text().split()[-1]) * 1024)
                if gnu_time
                else max(peak, usage.ru_maxrss * 1024)
            )
        os.unlink(rss_name)
        out_f.seek(0)
        err_f.seek(0)
        stdout = out_f.read().decode(errors="replace")
        stderr = err_f.read().decode(errors="replace")
    if check and p.returncode != 0:
        shown = cmd if isinstance(cmd, str) else " ".join(map(str, cmd))
        raise RuntimeError(f"command failed ({p.returncode}): {shown}\n{stderr[-3000:]}")
    return Sample(wall=wall, rss=peak), stdout + ("\n" + stderr if not capture else "")


def run_python(code: str, *, env: dict | None = None, cwd: Path | None = None, cores: int | None = None) -> Sample:
    """Run ``code`` in a fresh Python; it must print one JSON object as its last stdout line.

    The object's ``seconds`` (time measured inside the child, imports excluded)
    becomes ``Sample.inner``; the rest goes to ``Sample.extra``. ``cores``: as :func:`run_cmd`.
    """
    sample, out = run_cmd([python_exe(), "-c", textwrap.dedent(code)], env=env, cwd=cwd, cores=cores)
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"no JSON result from the child:\n{out[-2000:]}")
    data = json.loads(lines[-1])
    sample.inner = data.pop("seconds", None)
    sample.extra = data
    return sample


def repeat(fn, runs: int, label: str = "") -> list[Sample]:
    """Take ``runs`` samples of ``fn()`` (each returns a Sample), logged to stderr as they come."""
    out = []
    for i in range(runs):
        s = fn()
        out.append(s)
        inner = f", inner {s.inner:.2f} s" if s.inner is not None else ""
        log(f"  {label} run {i + 1}/{runs}: {s.wall:.2f} s{inner}, peak RSS {fmt_bytes(s.rss)}")
    return out


def med(samples: list[Sample], attr: str = "wall") -> float:
    vals = [getattr(s, attr) for s in samples if getattr(s, attr) is not None]
    return float(statistics.median(vals)) if vals else float("nan")


def peak_rss(samples: list[Sample]) -> int:
    return max(s.rss for s in samples)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine and reporting


def machine() -> dict:
    """CPU model, cores usable by this process, RAM, load, versions (and the GPU when torch sees one)."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = int(line.split()[1]) * 1024
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "ram": fmt_bytes(ram),
        "load_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    flags = ""
    with contextlib.suppress(OSError, StopIteration):
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
    info["simd"] = "avx512f" if " avx512f" in flags else ("avx2" if " avx2" in flags else "other")
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def machine_line(info: dict | None = None) -> str:
    info = info or machine()
    parts = [f"{info['cpu']}, {info['cores']} cores ({info['simd']}), {info['ram']} RAM"]
    if info.get("gpu"):
        parts.append(f"GPU {info['gpu']}")
    parts.append(f"1-min load at start {info['load_1min']}")
    parts.append(
        f"Python {info['python']}, NumPy {info['numpy']}" + (f", torch {info['torch']}" if "torch" in info else "")
    )
    return "; ".join(parts)


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n}"


def fmt_num(n: float) -> str:
    if n != n:
        return "n/a"
    if abs(n) >= 1e9:
        return f"{n / 1e9:.2f} G"
    if abs(n) >= 1e6:
        return f"{n / 1e6:.2f} M"
    if abs(n) >= 1e3:
        return f"{n / 1e3:.1f} k"
    return f"{n:.3g}"


def table(headers: list[str], rows: list[list]) -> str:
    """Format a Markdown table (left-aligned first column)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def deflate_libraries() -> dict[str, str]:
    """Versions of the deflate libraries the tools compared here use (what a bigWig or BAM ratio depends on)."""
    import zlib

    out = {"zlib": zlib.ZLIB_RUNTIME_VERSION}
    with contextlib.suppress(ImportError):
        import isal

        out["isal"] = isal.__version__
    with contextlib.suppress(ImportError):
        import pysam

        out["pysam"] = pysam.__version__
        out["pysam_htslib_deflate"] = "libdeflate" if getattr(pysam.config, "HAVE_LIBDEFLATE", 0) else "zlib"
    with contextlib.suppress(ImportError):
        from atacdenoise.io import bbiwrite

        out["bbiwrite_fast"] = bbiwrite.DEFLATE  # the library of fast=True ("isal", or "zlib" without it)
        out["bbiwrite_level"] = str(bbiwrite.DEFLATE_LEVEL)
    samtools = shutil.which("samtools")
    if samtools:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            text = subprocess.run([samtools, "--version"], capture_output=True, timeout=30).stdout.decode(
                errors="replace"
            )
            out["samtools"] = text.splitlines()[0].split()[-1]
            out["samtools_htslib_deflate"] = "libdeflate" if "libdeflate=yes" in text else "zlib"
    return out


def report(
    title: str,
    headers: list[str],
    rows: list[list],
    notes: list[str],
    args,
    data: dict,
    settings: list[str] | None = None,
) -> None:
    """Print the table with the machine line, the settings (threads, compression level, deflate library) and notes.

    With ``args.json``, also dump everything as JSON.
    """
    info = machine()
    print(f"\n## {title}\n")
    print(f"Machine: {machine_line(info)}; {args.runs} runs each, medians; --threads {args.threads}.\n")
    for line in settings or []:
        print(f"Settings: {line}  ")
    if settings:
        print()
    print(table(headers, rows))
    if notes:
        print()
        for n in notes:
            print(f"- {n}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "title": title,
                    "machine": info,
                    "settings": settings or [],
                    "deflate_libraries": deflate_libraries(),
                    "headers": headers,
                    "rows": rows,
                    "notes": notes,
                    **data,
                },
                indent=2,
                default=str,
            )
        )


def scaling_note(sizes: list[float], times: list[float], what: str) -> str:
    """Log-log slope of time against size: 1 = linear."""
    sizes_a, times_a = np.asarray(sizes, float), np.asarray(times, float)
    ok = (sizes_a > 0) & (times_a > 0)
    if ok.sum() < 2:
        return f"{what}: too few sizes for a scaling slope"
    slope = np.polyfit(np.log(sizes_a[ok]), np.log(times_a[ok]), 1)[0]
    return f"{what}: time grows as size^{slope:.2f} over {fmt_num(sizes_a[ok].min())}-{fmt_num(sizes_a[ok].max())}"


# --------------------------------------------------------------------------- synthetic inputs


def synthetic_pe_bam(path: Path, sizes: dict[str, int], n_fragments: int, seed: int = 7, read_len: int = 50) -> Path:
    """Coordinate-sorted, indexed paired-end BAM of ``n_fragments`` read pairs over ``sizes``, written with pysam.

    Fragments are drawn with a realistic ATAC mix: 60 % in 2-kb "open" regions
    (one per 50 kb), the rest uniform; lengths 60-600 bp (nucleosome ladder-ish);
    MAPQ 40 (90 %), 0-29 (10 %); 5 % of fragments flagged duplicate; all proper
    pairs (read 1 forward at the fragment start, read 2 reverse ending at its end).
    Read names are unique (``f<number>``), so the hash of ``samtools view -s``
    sees distinct names, as with real reads.
    """
    import pysam

    if path.exists() and Path(str(path) + ".bai").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    chroms = list(sizes)
    lengths = np.array([sizes[c] for c in chroms], dtype=np.int64)
    per_chrom = rng.multinomial(n_fragments, lengths / lengths.sum())
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": c, "LN": int(n)} for c, n in sizes.items()]}
    tmp = path.with_suffix(".tmp.bam")
    qual = pysam.qualitystring_to_array("I" * read_len)
    seq = "A" * read_len
    t0 = time.perf_counter()
    serial = 0
    with pysam.AlignmentFile(str(tmp), "wb", header=header, threads=2) as out:
        for tid, (_c, n) in enumerate(zip(chroms, per_chrom)):
            L = int(lengths[tid])
            if n == 0 or L < 2000:
                continue
            n_open = max(1, L // 50_000)
            centres = rng.integers(1000, L - 1000, n_open)
            in_open = rng.random(n) < 0.6
            mid = np.where(
                in_open, centres[rng.integers(0, n_open, n)] + rng.integers(-1000, 1000, n), rng.integers(0, L, n)
            )
            flen = np.clip(rng.gamma(2.0, 90.0, n).astype(np.int64) + 60, 60, 600)
            start = np.clip(mid - flen // 2, 0, L - 601)
            end = start + flen
            mapq = np.where(rng.random(n) < 0.9, 40, rng.integers(0, 30, n))
            dup = rng.random(n) < 0.05
            names = np.arange(serial, serial + n)
            serial += n
            # two records per fragment, sorted by position
            pos = np.concatenate([start, end - read_len])
            order = np.argsort(pos, kind="stable")
            frag = np.concatenate([np.arange(n), np.arange(n)])[order]
            is_r2 = order >= n
            pos = pos[order]
            for f, r2, p in zip(frag.tolist(), is_r2.tolist(), pos.tolist()):
                a = pysam.AlignedSegment()
                a.query_name = f"f{names[f]}"
                a.query_sequence = seq
                a.flag = (1 | 2 | (0x80 | 0x10 if r2 else 0x40 | 0x20)) | (0x400 if dup[f] else 0)
                a.reference_id = tid
                a.reference_start = p
                a.mapping_quality = int(mapq[f])
                a.cigartuples = ((0, read_len),)
                a.next_reference_id = tid
                a.next_reference_start = int(start[f] if r2 else end[f] - read_len)
                a.template_length = int(-flen[f] if r2 else flen[f])
                a.query_qualities = qual
                out.write(a)
    pysam.index(str(tmp))
    os.replace(str(tmp) + ".bai", str(path) + ".bai")
    os.replace(tmp, path)
    log(
        f"  wrote {path} ({n_fragments:,} fragments, {fmt_bytes(path.stat().st_size)}) "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    return path


def synthetic_coverage(
    n_bases: int, rng: np.random.Generator, cuts_per_kb: float = 4.0, smooth_bp: int = 200
) -> np.ndarray:
    """Smoothed cut-site coverage of one chromosome: float32[n_bases], integer counts, 201-bp boxes.

    Cut sites: half in 2-kb open regions (one per 50 kb, 10× enriched), half
    uniform, ``cuts_per_kb`` per kb on average (4/kb over hg38 is ~12 M cut
    sites, a 6 M-fragment sample).
    """
    n_cuts = rng.poisson(cuts_per_kb * n_bases / 1000)
    n_open = max(1, n_bases // 50_000)
    centres = rng.integers(0, max(1, n_bases), n_open)
    half = n_cuts // 2
    pos = np.concatenate(
        [
            (centres[rng.integers(0, n_open, half)] + rng.integers(-1000, 1000, half)),
            rng.integers(0, n_bases, n_cuts - half),
        ]
    )
    pos = pos[(pos >= 0) & (pos < n_bases)]
    counts = np.bincount(pos, minlength=n_bases)
    c = np.concatenate(([0], np.cumsum(counts)))
    left, right = smooth_bp // 2, smooth_bp - smooth_bp // 2
    idx = np.arange(n_bases)
    hi = np.minimum(idx + left + 1, n_bases)
    lo = np.maximum(idx - right, 0)
    return (c[hi] - c[lo]).astype(np.float32)


def synthetic_coverage_bigwig(path: Path, sizes: dict[str, int], seed: int = 11, cuts_per_kb: float = 4.0) -> Path:
    """Make a coverage bigWig (with its JSON sidecar) over ``sizes``, written with the project's BigWigWriter."""
    if path.exists() and Path(str(path) + ".json").exists():
        return path
    from atacdenoise.io.bigwig import BigWigWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    n_cut = {}
    with BigWigWriter(path, sizes) as w:
        for c, n in sizes.items():
            for off in range(
                0, n, 50_000_000
            ):  # chunks bound the memory; boxes do not cross chunk edges (fine for a benchmark)
                m = min(50_000_000, n - off)
                cov = synthetic_coverage(m, rng, cuts_per_kb)
                n_cut[c] = n_cut.get(c, 0) + int(cov.sum() // 201)
                w.add(c, off, cov)
    write_synthetic_sidecar(path, n_cut, "synthetic (benchmarks/common.py)")
    log(
        f"  wrote {path} ({fmt_num(sum(sizes.values()))} bases, {fmt_bytes(path.stat().st_size)}) "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    return path


def parse_size(text: str) -> int:
    """'250k', '3M', '1.5G', '1000' -> int."""
    m = re.fullmatch(r"([0-9.]+)\s*([kKmMgG]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 250k, 3M, 1G)")
    mult = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


#: bases per chunk of :func:`synthetic_coverage_genome_bigwig`; fixed, so the values do not depend on the processes
GENOME_CHUNK = 8_000_000


def synthetic_coverage_chunk(task: tuple[int, int, int, float]) -> tuple[np.ndarray, int]:
    """One chunk of :func:`synthetic_coverage_genome_bigwig`: (coverage[n], cut sites drawn).

    The coverage holds integer counts in the narrowest unsigned type that fits them (uint8 at the default
    density: a quarter of the bytes of float32 to send from a worker process).

    ``task`` is ``(n_bases, seed, chunk_index, cuts_per_kb)``; the chunk's generator is seeded with
    ``(seed, chunk_index)``. The cut sites are drawn as in :func:`synthetic_coverage`; the 201-bp box
    is a difference of two slices of the padded cumulative sum (no index arrays: ~5x faster).
    """
    n, seed, index, cuts_per_kb = task
    rng = np.random.default_rng((seed, index))
    n_cuts = rng.poisson(cuts_per_kb * n / 1000)
    n_open = max(1, n // 50_000)
    centres = rng.integers(0, max(1, n), n_open)
    half = n_cuts // 2
    pos = np.concatenate(
        [centres[rng.integers(0, n_open, half)] + rng.integers(-1000, 1000, half), rng.integers(0, n, n_cuts - half)]
    )
    pos = pos[(pos >= 0) & (pos < n)]
    csum = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(pos, minlength=n), out=csum[1:])
    # cov[i] = csum[min(i + 101, n)] - csum[max(i - 100, 0)]: pad 100 zeros before, 100 copies of the total after
    ext = np.pad(csum, (100, 100), mode="edge")
    cov = ext[201 : 201 + n] - ext[:n]
    top = int(cov.max(initial=0))
    return cov.astype(np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32), int(pos.size)


def synthetic_coverage_genome_bigwig(
    path: Path,
    sizes: dict[str, int],
    seed: int = 11,
    cuts_per_kb: float = 4.0,
    processes: int | None = None,
    threads: int | None = None,
) -> dict:
    """Make a coverage bigWig (with its JSON sidecar) over a whole genome, fast: chunks made in parallel processes.

    Every chromosome is cut into :data:`GENOME_CHUNK`-base chunks, each made by
    :func:`synthetic_coverage_chunk` in one of ``processes`` spawned workers (default: half the usable
    cores, at least 1) while this process writes them in order with the project's bigWig writer
    (``threads`` deflate threads, default the other half; ISA-L when installed, else zlib level 1;
    10 zoom levels). At most ``2 x processes`` chunks wait, so memory stays bounded. The values do not depend on
    ``processes`` or ``threads`` (boxes do not cross chunk edges, as in :func:`synthetic_coverage_bigwig`).

    Returns ``{"path", "bases", "bytes", "seconds", "processes", "threads", "cached"}``; an existing file
    (with its sidecar and ``X.bw.make.json``) is reused and reports the seconds of the run that made it.
    """
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    from atacdenoise.io.bigwig import BigWigWriter

    path = Path(path)
    made = Path(str(path) + ".make.json")
    if path.exists() and Path(str(path) + ".json").exists() and made.exists():
        return {**json.loads(made.read_text()), "path": str(path), "cached": True}
    cores = len(os.sched_getaffinity(0))
    processes = processes or max(1, cores // 2)
    threads = threads or max(1, cores - processes)
    tasks = [(c, off, min(GENOME_CHUNK, n - off)) for c, n in sizes.items() for off in range(0, n, GENOME_CHUNK)]
    path.parent.mkdir(parents=True, exist_ok=True)
    n_cut: dict[str, int] = {}
    t0 = time.perf_counter()
    with (
        ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn")) as pool,
        BigWigWriter(path, sizes, threads=threads, fast=True) as w,
    ):
        waiting: deque = deque()
        todo = iter(enumerate(tasks))
        while True:
            while len(waiting) < 2 * processes:
                nxt = next(todo, None)
                if nxt is None:
                    break
                i, (c, off, m) = nxt
                waiting.append((c, off, pool.submit(synthetic_coverage_chunk, (m, seed, i, cuts_per_kb))))
            if not waiting:
                break
            c, off, fut = waiting.popleft()
            cov, cuts = fut.result()
            n_cut[c] = n_cut.get(c, 0) + cuts
            w.add(c, off, cov)
    seconds = time.perf_counter() - t0
    write_synthetic_sidecar(path, n_cut, "synthetic (benchmarks/common.py: synthetic_coverage_genome_bigwig)")
    bases = sum(sizes.values())
    info = {
        "bases": bases,
        "chroms": len(sizes),
        "bytes": path.stat().st_size,
        "seconds": seconds,
        "processes": processes,
        "threads": threads,
    }
    made.write_text(json.dumps(info, indent=2))
    log(
        f"  wrote {path} ({fmt_num(bases)} bases, {len(sizes)} chromosomes, {fmt_bytes(info['bytes'])}) in "
        f"{seconds:.1f} s ({bases / seconds / 1e6:.1f} M bases/s; {processes} processes, {threads} writer threads)"
    )
    return {**info, "path": str(path), "cached": False}


def write_synthetic_sidecar(path: Path, n_cut: dict[str, int], source: str) -> None:
    """Write the preprocessing sidecar ``X.bw.json`` of a synthetic coverage bigWig (the default preprocessing)."""
    from atacdenoise.model.dataset import DEFAULT_PREPROCESSING

    meta = {**DEFAULT_PREPROCESSING, "source": source, "kind": "bam", "n_cut_sites": n_cut}
    Path(str(path) + ".json").write_text(json.dumps(meta, indent=2))
