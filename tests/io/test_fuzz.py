"""Fuzzing the binary readers: damaged bigWig, BAM (BGZF) and fragments (bgzip, gzip) files end in InputError.

Each case damages a copy of a small real file (cut from ``../shared/data`` with the project's writers and
pysam) at random bytes, a random run of bytes or a truncation point, sometimes in its index, and runs on it
what the workflow runs on such a file: the start-up checks (:mod:`atacdenoise.checks`) and the readers of
the stages. Every case must either read (the damage fell in bytes the readers do not use, or left the data
valid) or end in :class:`~atacdenoise.errors.InputError`, within :data:`CASE_SECONDS` and an address space
of :data:`MEMORY_BYTES`: no hang, no ``MemoryError``, no other exception, no crash. A truncated file must
never read.

The cases run in a worker process (this file run as a script) under ``RLIMIT_AS``; the test watches its
progress, so a hang or a crash in C code is reported with its case, and the worker restarts after it.
Seeded: a failure reproduces (the report lists the case: file, damage and what happened).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback
from pathlib import Path

#: seconds one case may take (reading a few hundred kB; ~0.1 s when the machine is idle)
CASE_SECONDS = 20
#: address space of the worker (imports take ~1 GiB of it: NumPy, pandas, pysam and the thread stacks)
MEMORY_BYTES = 2 << 30
#: cases of each fixture (a few hundred in all: well under a minute on two busy cores)
CASES = {"bigwig_ours": 80, "bigwig_ucsc": 60, "bam_se": 50, "bam_pe": 35, "bgzip": 55, "gzip": 30}
SEED = 20240917
#: the only outcomes allowed
ALLOWED = {"ok", "input_error"}


# --------------------------------------------------------------------------- fixtures (the test process)
def _bgzf_blocks(raw: bytes) -> list[int]:
    """Offsets of the BGZF blocks of a BAM or bgzip file."""
    offsets, at = [], 0
    while at + 18 <= len(raw):
        offsets.append(at)
        at += struct.unpack_from("<H", raw, at + 16)[0] + 1
    return offsets


def _hot_ranges(kind: str, raw: bytes) -> list[tuple[int, int]]:
    """Byte ranges holding structure (headers, trees, block headers), where damage is most telling."""
    if kind.startswith("bigwig"):
        data_offset, index_offset = struct.unpack_from("<QQ", raw, 16)
        return [(0, min(data_offset, len(raw))), (index_offset, min(len(raw), index_offset + 4096))]
    if kind in ("bam_se", "bam_pe", "bgzip"):
        blocks = _bgzf_blocks(raw)
        return [(b, b + 18) for b in blocks] + [(0, min(len(raw), 4096)), (len(raw) - 28, len(raw))]
    return [(0, 32), (len(raw) - 8, len(raw))]


def make_fixtures(shared: Path, where: Path) -> dict[str, dict]:
    """Cut small real files into ``where``: two bigWigs, two BAMs, a bgzipped and a gzipped fragments file."""
    import numpy as np
    import pysam

    from atacdenoise.io.bigwig import open_bigwig, write_bigwig
    from atacdenoise.io.fragments import iter_fragments, write_fragments

    where.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict] = {}

    # our writer: the first 400 kb of the published HSC coverage (per-base and run blocks)
    published = shared / "hsc" / "HSC_5M.published_coverage.chr1_chr2.bw"
    sizes = {"chr1": 400_000, "chr2": 300_000}
    with open_bigwig(published) as bw:
        tracks = {c: bw.values(c, 0, n, fill=0.0) for c, n in sizes.items()}
    tracks["chr2"][::7] = np.float32(0.5) + tracks["chr2"][::7]  # per-base values: fixed-step blocks too
    write_bigwig(where / "ours.bw", sizes, tracks)
    out["bigwig_ours"] = {"path": "ours.bw", "sizes": sizes}
    # a UCSC-made bigWig (with zoom levels) as it is
    shutil.copy(published, where / "ucsc.bw")
    with open_bigwig(published) as bw:
        out["bigwig_ucsc"] = {"path": "ucsc.bw", "sizes": bw.chroms()}

    # BAMs: the first reads of each chromosome, re-written and indexed by pysam
    for name, src, per_chrom in (
        ("bam_se", shared / "hsc" / "HSC_5M.chr1_chr2.bam", 1500),
        ("bam_pe", shared / "encode" / "ENCSR356KRQ_pe_1in400.chr19_chrM.dupmarked.bam", 2000),
    ):
        dst = where / f"{name}.bam"
        with pysam.AlignmentFile(str(src), "rb") as bam:
            chroms = dict(zip(bam.references, bam.lengths))
            with pysam.AlignmentFile(str(dst), "wb", template=bam) as w:
                for chrom in chroms:
                    for i, read in enumerate(bam.fetch(chrom)):
                        if i >= per_chrom:
                            break
                        w.write(read)
        pysam.index(str(dst))
        out[name] = {"path": dst.name, "index": f"{dst.name}.bai", "sizes": chroms}

    # fragments: the first 2,500 fragments of the PBMC file, bgzipped + tabix-indexed, and plain gzip
    src = shared / "pbmc_sc" / "pbmc_C2C5.fragments.tsv.gz"
    chunk = next(iter_fragments(src, chunk_rows=2500, barcodes=True))
    fsizes = {"chr1": 249_250_621, "chr2": 243_199_373}
    write_fragments([chunk], where / "frag.tsv.gz", header="# cut from pbmc_C2C5.fragments.tsv.gz\n")
    out["bgzip"] = {"path": "frag.tsv.gz", "index": "frag.tsv.gz.tbi", "sizes": fsizes}
    with pysam.BGZFile(str(where / "frag.tsv.gz"), "rb") as fh:
        text = fh.read()
    (where / "plain.tsv.gz").write_bytes(gzip.compress(text, mtime=0))
    out["gzip"] = {"path": "plain.tsv.gz", "sizes": fsizes}
    return out


def make_cases(fixtures: dict[str, dict], where: Path, seed: int = SEED) -> list[dict]:
    """Draw the damage of every case: flipped bytes, a zeroed run or a truncation, in the file or its index."""
    rng = random.Random(seed)
    cases = []
    for kind, n in CASES.items():
        fx = fixtures[kind]
        for _ in range(n):
            target = "index" if fx.get("index") and rng.random() < 0.2 else "path"
            raw = (where / fx[target]).read_bytes()
            hot = _hot_ranges(kind, raw) if target == "path" else [(0, min(len(raw), 256))]
            mode = rng.choices(["bytes", "run", "truncate"], weights=[5, 2, 2])[0]
            case = {"kind": kind, "target": target, "mode": mode, "edits": [], "truncate": None}
            if mode == "truncate":
                case["truncate"] = rng.randrange(0, len(raw))
            else:
                for _ in range(rng.randint(1, 6) if mode == "bytes" else 1):
                    if rng.random() < 0.6:
                        a, b = rng.choice(hot)
                        pos = rng.randrange(a, max(a + 1, b))
                    else:
                        pos = rng.randrange(len(raw))
                    width = 1 if mode == "bytes" else rng.randint(8, 256)
                    fill = bytes(rng.randrange(256) for _ in range(width)) if mode == "bytes" else b"\0" * width
                    case["edits"].append([min(pos, len(raw) - 1), fill.hex()])
            cases.append(case)
    return cases


# --------------------------------------------------------------------------- the worker (this file as a script)
def _damage(case: dict, fx: dict, src: Path, work: Path) -> Path:
    """Write the damaged copy of the case's fixture (and an undamaged or damaged index beside it) into ``work``."""
    for f in work.iterdir():
        f.unlink()
    names = {"path": fx["path"], **({"index": fx["index"]} if fx.get("index") else {})}
    for role, name in names.items():
        raw = bytearray((src / name).read_bytes())
        if role == case["target"]:
            if case["truncate"] is not None:
                del raw[case["truncate"] :]
            for pos, fill in case["edits"]:
                fill = bytes.fromhex(fill)
                raw[pos : pos + len(fill)] = fill[: len(raw) - pos]
        (work / name).write_bytes(bytes(raw))
    now = time.time()
    for name in names.values():  # the index no older than the data (else: the stale-index error, every time)
        os.utime(work / name, (now, now))
    return work / fx["path"]


def _read_bigwig(path: Path, sizes: dict[str, int]) -> None:
    from atacdenoise.checks import check_bigwig_file
    from atacdenoise.io.bigwig import BigWigSource, bigwig_total, open_bigwig, read_bigwig

    check_bigwig_file(path, sizes)
    bigwig_total(path, sizes)
    with open_bigwig(path, threads=2) as bw:
        for chrom, n in sizes.items():
            bw.values(chrom)
            bw.runs(chrom, 0, min(n, 200_000))
            bw.runs_at_least(chrom, 1.0)
            bw.stats(chrom)
    chrom = next(iter(sizes))
    read_bigwig(path, chrom, 0, min(sizes[chrom], 100_000))
    src = BigWigSource(path, sizes, list(sizes))
    try:
        src.read(chrom, 0, min(sizes[chrom], 50_000))
    finally:
        src.close()


def _read_bam(path: Path, sizes: dict[str, int]) -> None:
    from atacdenoise.checks import check_bam_file, probe_counts
    from atacdenoise.io.bam import count_usable_by_kind
    from atacdenoise.reads.coverage import bam_cut_sites_by_chrom
    from atacdenoise.reads.fraglen import fragment_lengths

    check_bam_file(path, sizes)
    probe_counts(path, "bam", sizes)
    bam_cut_sites_by_chrom(path, sizes)
    count_usable_by_kind(path, list(sizes))
    fragment_lengths(path, "bam", sizes)


def _read_fragments(path: Path, sizes: dict[str, int]) -> None:
    from atacdenoise.checks import check_fragments_head, probe_counts
    from atacdenoise.io.fragments import count_fragments, iter_fragments
    from atacdenoise.reads.coverage import fragments_cut_sites_by_chrom
    from atacdenoise.reads.fraglen import fragment_lengths

    check_fragments_head(path, sizes)
    probe_counts(path, "fragments", sizes)
    count_fragments(path, sizes)
    fragments_cut_sites_by_chrom(path, sizes)
    for _ in iter_fragments(path, chunk_rows=1000, barcodes=True):
        pass
    fragment_lengths(path, "fragments", sizes)


READERS = {
    "bigwig_ours": _read_bigwig,
    "bigwig_ucsc": _read_bigwig,
    "bam_se": _read_bam,
    "bam_pe": _read_bam,
    "bgzip": _read_fragments,
    "gzip": _read_fragments,
}


def _alarm(signum, frame):
    raise TimeoutError(f"case took over {CASE_SECONDS} s")


def worker(spec_path: str) -> None:
    """Run the cases of ``spec_path`` from its ``first`` on, appending one JSON line per case start and end."""
    import resource

    spec = json.loads(Path(spec_path).read_text())
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    import logging

    logging.disable(logging.CRITICAL)  # warnings of the readers are not what is tested
    import pysam

    pysam.set_verbosity(0)  # htslib's own messages on damaged files
    from atacdenoise.errors import InputError

    signal.signal(signal.SIGALRM, _alarm)
    src, work = Path(spec["fixtures_dir"]), Path(spec["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    with open(spec["results"], "a") as out:
        for i in range(spec["first"], len(spec["cases"])):
            case = spec["cases"][i]
            fx = spec["fixtures"][case["kind"]]
            out.write(json.dumps({"case": i, "start": True}) + "\n")
            out.flush()
            path = _damage(case, fx, src, work)
            t0 = time.perf_counter()
            signal.alarm(CASE_SECONDS)
            try:
                READERS[case["kind"]](path, fx["sizes"])
                outcome, detail = "ok", ""
            except InputError as exc:
                outcome, detail = "input_error", str(exc).splitlines()[0][:300]
            except TimeoutError as exc:
                outcome, detail = "hang", str(exc)
            except MemoryError:
                outcome, detail = "memory", traceback.format_exc(limit=-4)
            except Exception:
                outcome, detail = "traceback", traceback.format_exc(limit=-6)
            finally:
                signal.alarm(0)
            seconds = round(time.perf_counter() - t0, 3)
            out.write(json.dumps({"case": i, "outcome": outcome, "detail": detail, "seconds": seconds}) + "\n")
            out.flush()


# --------------------------------------------------------------------------- the test
def run_cases(fixtures: dict, cases: list[dict], fixtures_dir: Path, tmp: Path) -> dict[int, dict]:
    """Run ``cases`` in worker processes; a case without an end (crash, hang in C) is recorded and skipped."""
    results_path = tmp / "results.jsonl"
    results_path.write_text("")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2] / "workflow")])}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    first = 0
    ends: dict[int, dict] = {}
    while first < len(cases):
        spec = {
            "cases": cases,
            "first": first,
            "fixtures": fixtures,
            "fixtures_dir": str(fixtures_dir),
            "work_dir": str(tmp / "work"),
            "results": str(results_path),
        }
        spec_path = tmp / "spec.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.Popen(
            [sys.executable, __file__, str(spec_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        last_size, last_change = -1, time.monotonic()
        while proc.poll() is None:
            time.sleep(0.05)
            size = results_path.stat().st_size
            if size != last_size:
                last_size, last_change = size, time.monotonic()
            elif time.monotonic() - last_change > CASE_SECONDS + 10:  # stuck where the alarm cannot reach
                proc.kill()
                proc.wait()
        stderr = proc.stderr.read()
        started = None
        for line in results_path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("start"):
                started = rec["case"]
            else:
                ends[rec["case"]] = rec
                started = None
        if started is None:
            if len(ends) < len(cases) and proc.returncode != 0:
                raise AssertionError(
                    f"the fuzz worker failed before a case (status {proc.returncode}): {stderr[-2000:]}"
                )
            break
        ends[started] = {
            "case": started,
            "outcome": "crash or hang",
            "detail": f"worker status {proc.returncode}; {stderr[-800:]}",
        }
        first = started + 1
    return ends


def _describe(case: dict, rec: dict) -> str:
    where = f"truncated at byte {case['truncate']}" if case["truncate"] is not None else case["edits"]
    head = f"case {rec['case']} ({case['kind']} {case['target']}, {case['mode']}: {where})"
    return f"{head}: {rec['outcome']}\n{rec['detail']}"


def test_damaged_files_end_in_input_error(shared_data, tmp_path):
    fixtures_dir = tmp_path / "fixtures"
    fixtures = make_fixtures(shared_data, fixtures_dir)
    cases = make_cases(fixtures, fixtures_dir)
    assert 250 <= len(cases) <= 400
    t0 = time.monotonic()
    ends = run_cases(fixtures, cases, fixtures_dir, tmp_path)
    took = time.monotonic() - t0
    assert sorted(ends) == list(range(len(cases)))
    bad = [_describe(cases[i], rec) for i, rec in sorted(ends.items()) if rec["outcome"] not in ALLOWED]
    assert not bad, f"{len(bad)} of {len(cases)} damaged files did not end in InputError:\n" + "\n\n".join(bad[:12])
    # a truncated file never reads as if it were whole
    cut = [i for i, c in enumerate(cases) if c["truncate"] is not None and c["target"] == "path"]
    read = [_describe(cases[i], ends[i]) for i in cut if ends[i]["outcome"] == "ok"]
    assert not read, "truncated files read without an error:\n" + "\n".join(read)
    # the damage was seen: most cases end in the error, and every kind of file has some that do
    outcomes = {kind: [ends[i]["outcome"] for i, c in enumerate(cases) if c["kind"] == kind] for kind in CASES}
    for kind, got in outcomes.items():
        assert got.count("input_error") >= len(got) // 3, (kind, got.count("input_error"), len(got))
    slowest = max(rec["seconds"] for rec in ends.values())
    assert slowest < CASE_SECONDS, slowest
    print(
        f"{len(cases)} cases in {took:.1f} s; slowest {slowest:.2f} s; "
        + ", ".join(f"{k}: {v.count('input_error')} errors / {len(v)}" for k, v in outcomes.items())
    )


if __name__ == "__main__":
    worker(sys.argv[1])
