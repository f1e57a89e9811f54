"""One pass over a BAM's records in C: samtools' subsample decision and the usable-fragment filters.

Why: subsampling with samtools (pysam's htslib, built with zlib) and then
counting the output's usable fragments took two to three passes at about
half of Debian samtools' speed. Here the file's blocks inflate on threads
(ISA-L, :mod:`atacdenoise.io.bgzf`), a compiled loop (:mod:`atacdenoise.native`)
walks the records, keeps those samtools would keep, copies them unchanged and
counts the usable fragments among them, and the kept records deflate on
threads: one pass for the reads and the count. The read set is samtools'
by construction (the same hash; tests compare with pysam's samtools on real
BAMs); without a C compiler, or with ``ATACDENOISE_NATIVE_BAM=0``, callers use
samtools through pysam.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from atacdenoise import native
from atacdenoise.errors import InputError
from atacdenoise.io import bgzf
from atacdenoise.io.bgzf import BgzfWriter
from atacdenoise.reads.cutsites import (
    DUPLICATE,
    MATE_UNMAPPED,
    MIN_MAPQ,
    PAIRED,
    PROPER_PAIR,
    QCFAIL,
    READ1,
    SECONDARY,
    SUPPLEMENTARY,
    UNMAPPED,
)

log = logging.getLogger(__name__)

#: bytes kept free in front of every inflated chunk for the previous chunk's unfinished record
HEAD_ROOM = 1 << 20

#: the record loop
SCAN_SOURCE = r"""
#include <stdint.h>
#include <string.h>
static inline uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
/* khash's __ac_X31_hash_string over a (signed) char string, then __ac_Wang_hash, as samtools view --subsample */
static inline uint32_t name_hash(const uint8_t *name, int n, uint32_t seed) {
    const signed char *s = (const signed char *)name;
    uint32_t h = (uint32_t)(int32_t)s[0];
    if (h) for (int i = 1; i < n && s[i]; i++) h = (h << 5) - h + (uint32_t)(int32_t)s[i];
    uint32_t key = h ^ seed;
    key += ~(key << 15); key ^= (key >> 10); key += (key << 3); key ^= (key >> 6); key += ~(key << 11); key ^= (key >> 16);
    return key;
}
/* Copies the records of buf[0, len) that samtools would keep for (seed, frac) to out (unless out is NULL; frac > 1
   keeps every record); stops before a record that does not fit whole. counts[0] += records kept, counts[1] += kept
   usable proper pairs (first reads), counts[2] += kept usable single-end reads (usable: tid with chrom_ok[tid],
   MAPQ >= min_mapq, flags as bam.usable_filter_args). Returns the bytes consumed, or -(1 + offset) of a malformed
   record (a record size under 32 bytes or over 256 MiB, a read name that does not fit). */
long long bam_subsample(const uint8_t *buf, long long len, uint32_t seed, double frac, const uint8_t *chrom_ok,
                        int n_ref, int min_mapq, int pe_need, int pe_off, int se_off, uint8_t *out, long long *out_len,
                        long long *counts) {
    long long p = 0, o = *out_len;
    while (p + 4 <= len) {
        uint32_t bs = rd32(buf + p);
        if (bs < 32 || bs > (1u << 28)) return -1 - p; /* damaged: do not wait for a record that cannot be */
        if (p + 4 + (long long)bs > len) break;
        const uint8_t *r = buf + p;
        int l_name = r[12];
        if (36 + l_name > 4 + (long long)bs || l_name < 1) return -1 - p;
        uint32_t k = name_hash(r + 36, l_name, seed);
        if ((double)(k & 0xffffff) / 0x1000000 < frac) {
            if (out) { memcpy(out + o, r, 4 + (size_t)bs); o += 4 + bs; }
            counts[0]++;
            int32_t tid = (int32_t)rd32(r + 4);
            int flag = rd16(r + 18), mapq = r[13];
            if (tid >= 0 && tid < n_ref && chrom_ok[tid] && mapq >= min_mapq) {
                if ((flag & pe_need) == pe_need && !(flag & pe_off)) counts[1]++;
                else if (!(flag & se_off)) counts[2]++;
            }
        }
        p += 4 + bs;
    }
    *out_len = o;
    return p;
}
"""

_scan = None
_scan_tried = False


def _load_scan():
    """The compiled record scan (a ctypes function), or None: no compiler, or ``ATACDENOISE_NATIVE_BAM=0``."""
    global _scan, _scan_tried
    if not _scan_tried:
        _scan_tried = True
        if native.off("ATACDENOISE_NATIVE_BAM"):
            log.info("native BAM record scan off (ATACDENOISE_NATIVE_BAM); using samtools (pysam)")
            return None
        lib = native.build("bamscan", SCAN_SOURCE, "native BAM record scan (samtools via pysam is ~2x slower)")
        if lib is not None:
            P, LL = ctypes.c_void_p, ctypes.c_longlong
            I = ctypes.c_int
            lib.bam_subsample.argtypes = [P, LL, ctypes.c_uint32, ctypes.c_double, P, I, I, I, I, I, P, P, P]
            lib.bam_subsample.restype = LL
            _scan = lib.bam_subsample
    return _scan


def hash_seed(seed: int) -> int:
    """The value samtools xors into every name hash for ``--subsample-seed seed`` (see the module docstring)."""
    seed = int(seed)
    if seed == 0:
        return 0
    libc = ctypes.CDLL(None)
    libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
    return libc.rand() & 0xFFFFFFFF


def _bam_header(data: bytes | memoryview, path: str | Path) -> tuple[int, list[str]] | None:
    """(header length in bytes, reference names) of the BAM data's start, or None when it is not all there yet."""
    mv = memoryview(data)
    if len(mv) < 12:
        return None
    if mv[:4].tobytes() != b"BAM\x01":
        raise InputError(f"{path}: not a BAM file (no BAM magic after decompression)")
    l_text = int.from_bytes(mv[4:8], "little")
    pos = 8 + l_text
    if len(mv) < pos + 4:
        return None
    n_ref = int.from_bytes(mv[pos : pos + 4], "little")
    pos += 4
    names = []
    for _ in range(n_ref):
        if len(mv) < pos + 4:
            return None
        l_name = int.from_bytes(mv[pos : pos + 4], "little")
        if len(mv) < pos + 4 + l_name + 4:
            return None
        names.append(mv[pos + 4 : pos + 4 + l_name - 1].tobytes().decode())
        pos += 4 + l_name + 4
    return pos, names


def _with_subsample_comment(header: bytes, fraction: float, seed: int) -> bytes:
    """The BAM header with the ``@CO`` line samtools view adds for ``--subsample`` (its text, not its @PG)."""
    l_text = int.from_bytes(header[4:8], "little")
    text = header[8 : 8 + l_text].rstrip(b"\0")
    if text and not text.endswith(b"\n"):
        text += b"\n"
    text += f"@CO\tSub-sampled fraction={float(fraction):g} seed={int(seed) & 0xFFFFFFFF}\n".encode()
    return header[:4] + len(text).to_bytes(4, "little") + text + header[8 + l_text :]


def available() -> bool:
    """Whether the native scan can run here (see :func:`_load_scan`)."""
    return _load_scan() is not None


def scan_bam(
    src: str | Path,
    chroms: list[str] | None,
    min_mapq: int = MIN_MAPQ,
    keep_duplicates: bool = False,
    threads: int = 1,
    fraction: float = 2.0,
    seed: int = 0,
    out: str | Path | None = None,
) -> dict[str, int]:
    """Usable fragments per kind among the records of ``src`` that samtools' ``--subsample fraction --subsample-seed
    seed`` keeps (every record by default), written as BAM to ``out`` when given; one pass over the file.

    Usable, as :func:`atacdenoise.io.bam.count_usable_by_kind` counts them: on
    ``chroms`` (every reference of the BAM when None), MAPQ >= ``min_mapq``,
    proper pairs by their first read and single-end reads, flags as
    :func:`atacdenoise.io.bam.usable_filter_args`. ``out`` gets the input's
    header with samtools' ``@CO Sub-sampled ...`` line and the kept records
    byte for byte (no index; not atomic: the caller writes a temporary file).
    Raises ``InputError`` naming the file for what is not a whole BAM.
    """
    scan = _load_scan()
    if scan is None:
        raise RuntimeError("the native BAM record scan is not available here (check available() first)")
    off = UNMAPPED | SECONDARY | QCFAIL | SUPPLEMENTARY | (0 if keep_duplicates else DUPLICATE)
    pe_need, pe_off, se_off = PAIRED | PROPER_PAIR | READ1, off | MATE_UNMAPPED, off | PAIRED
    s = hash_seed(seed)
    counts = (ctypes.c_longlong * 3)()
    out_len = ctypes.c_longlong(0)
    with (
        ThreadPoolExecutor(max(1, threads), thread_name_prefix="bgzf") as pool,
        open(out, "wb") if out is not None else contextlib.nullcontext() as fh,
    ):
        writer = BgzfWriter(fh, pool) if fh is not None else None
        kept_bufs, marks = (
            [np.empty(0, np.uint8), np.empty(0, np.uint8)],
            [0, 0],
        )  # reused in turn (see bgzf.read_chunks)
        pending = np.empty(0, np.uint8)  # the unfinished record (or header) at the end of the previous chunk
        header, chrom_ok, turn = None, None, 0
        for buf, start, end in bgzf.read_chunks(src, pool, head_room=HEAD_ROOM):
            if len(pending) <= start:  # the carried bytes go right before the chunk: no copy of the chunk
                buf[start - len(pending) : start] = pending
                data = buf[start - len(pending) : end]
            else:  # a record longer than the head room
                data = np.concatenate([pending, buf[start:end]])
            if header is None:
                header = _bam_header(memoryview(data), src)
                if header is None:
                    pending = data.copy()
                    continue
                size, names = header
                if writer is not None:
                    head = data[:size].tobytes()
                    writer.write(_with_subsample_comment(head, fraction, seed) if fraction <= 1 else head)
                    writer.flush()  # the header in blocks of its own, as htslib writes it
                wanted = set(names if chroms is None else chroms)
                chrom_ok = np.array([name in wanted for name in names] or [False], np.uint8)
                data = data[size:]
            kept = None
            if writer is not None:
                writer.wait(marks[turn])  # the blocks made from this buffer last time are written out
                if kept_bufs[turn].size < len(data):
                    kept_bufs[turn] = np.empty(int(len(data) * 1.25) + 1, np.uint8)
                kept = kept_bufs[turn]
            out_len.value = 0
            used = scan(
                data.ctypes.data,
                len(data),
                s,
                float(fraction),
                chrom_ok.ctypes.data,
                len(header[1]),
                int(min_mapq),
                pe_need,
                pe_off,
                se_off,
                None if kept is None else kept.ctypes.data,
                ctypes.byref(out_len),
                counts,
            )
            if used < 0:
                raise InputError(f"{src}: malformed BAM record after the header; is the file a whole BAM?")
            if writer is not None:
                writer.write(kept[: out_len.value])
                marks[turn], turn = writer.mark(), 1 - turn
            pending = data[used:].copy()
        if header is None:
            raise InputError(f"{src}: no complete BAM header; is the file a whole BAM?")
        if len(pending):
            raise InputError(f"{src}: truncated BAM (a partial record at the end); is the file whole?")
        if writer is not None:
            writer.close()
    log.debug("%s: %d records kept", src, counts[0])
    return {"paired_end": int(counts[1]), "single_end": int(counts[2])}
