"""Training data: per-chromosome arrays on disk, random training windows, fixed validation tiles.

Stored once per sample, a **clean part** (``atacdenoise dataset-clean``; ``meta.json`` format
:data:`CLEAN_FORMAT`) holds, for every chromosome, ``{chrom}.clean.npy`` (the deep coverage) and
``{chrom}.flags.npy`` (uint8: bit 0 = in a clean peak, bit 1 = usable, i.e. not blacklisted and
inside the target regions). A **pair** (``atacdenoise dataset``; one per noisy input, format
:data:`META_FORMAT`) holds only ``{chrom}.noisy.npy`` and a ``meta.json`` naming its clean part
(``clean_dataset``, a path relative to the pair's directory: ``../clean`` in the workflow, ``clean``
when a pair is made in one step with its own clean part inside). Coverage is stored in the narrowest
type that holds it exactly (:func:`narrowest`): smoothed cut-site counts are whole numbers, so
uint8/uint16 (float32 only with ``cpm``). On the demo this is 1-2 bytes a base per extra noisy input
and 3-4 for the clean part, against 9.6 bytes a base per pair when every pair held float32 copies of
everything (``docs/ARCHITECTURE.md``). Arrays are memory-mapped, so a window costs only its own bytes;
training hands windows on in their stored types (:func:`read_window_stored`) and decodes them to float32
where the model runs (:func:`decode_batch`).

A window is ``interval + 2 * pad`` bases: a centre of ``interval`` bases where the
loss is computed and ``pad`` bases of context on each side. Bases beyond a
chromosome end read as zeros with mask 0. Training windows are drawn at random
centre offsets each epoch (proportional to usable length, over all datasets) and
never touch a validation or holdout region, context included; validation uses
fixed tiles of ``interval`` over its regions.

With target regions (``genome.regions``) a dataset stores, per chromosome, only
the span from the first region's start to the last one's end (``meta.json``:
``offsets`` and the full ``chrom_sizes``), its mask is 0 between regions, and
windows are drawn only where they overlap a region (``meta.json``: ``regions``,
in stored coordinates). Window coordinates are stored coordinates throughout.

Each ``meta.json`` also records its array files' sizes and checksums (``checksums``),
computed from the bytes as they are written; training ties its checkpoints to
them (see :func:`dataset_content_id`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.atomic import atomic_output_dir
from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import check_bigwig, open_bigwig, read_bigwig
from atacdenoise.io.genome import Region, naming_hint
from atacdenoise.io.intervals import mask_from_intervals, merge_intervals, read_bed, read_narrowpeak
from atacdenoise.io.regions import TargetRegions, restrict_sizes
from atacdenoise.io.sidecar import read_sidecar
from atacdenoise.log import progress

log = logging.getLogger(__name__)

META_FORMAT = "atacdenoise-dataset/2"
CLEAN_FORMAT = "atacdenoise-clean/1"
#: formats of older versions, refused with the fix
OLD_FORMATS = ("atacdenoise-dataset/1",)
#: the arrays a window holds (all float32 once read); ``labels`` and ``mask`` are stored as bits of ``flags``
ARRAYS: dict[str, type] = {"noisy": np.float32, "clean": np.float32, "labels": np.uint8, "mask": np.uint8}
#: bits of ``{chrom}.flags.npy``
FLAG_LABEL, FLAG_USABLE = 1, 2
#: meta.json keys that describe the clean part (stored there once per sample); the rest describe a pair
CLEAN_KEYS = (
    "sample",
    "cell_type",
    "clean",
    "labels",
    "blacklist",
    "target_regions",
    "offsets",
    "chrom_sizes",
    "regions",
)
#: where a pair made in one step keeps its own clean part
INNER_CLEAN = "clean"
#: elements checked at a time when choosing a storage type (bounds the temporary memory)
_CHECK_CHUNK = 1 << 24
#: preprocessing keys recorded in meta.json and in model.pt
PREPROCESSING_KEYS = ("smooth_bp", "shift_plus", "shift_minus", "min_mapq", "keep_duplicates", "cpm")
#: keys on which a noisy/clean pair, several datasets, or a model and a track must agree
MUST_MATCH = ("smooth_bp", "shift_plus", "shift_minus", "cpm")
DEFAULT_PREPROCESSING = {
    "smooth_bp": 200,
    "shift_plus": 4,
    "shift_minus": -5,
    "min_mapq": 30,
    "keep_duplicates": False,
    "cpm": False,
}

#: checksum of the array files recorded in meta.json (``checksums``) and used by :func:`dataset_content_id`
CHECKSUM_ALGORITHM = "blake2b-128"
CHECKSUM_CHUNK = 8 << 20

#: one window: dataset index, chromosome index (in that dataset's chromosome order), centre start,
#: end of the loss zone (= start + interval, or a validation region's end), strand flip
WINDOW_DTYPE = np.dtype(
    [("pair", np.int32), ("chrom", np.int32), ("start", np.int64), ("stop", np.int64), ("flip", np.bool_)]
)


# --------------------------------------------------------------------------- arrays of one chromosome
def chrom_arrays(
    noisy: np.ndarray,
    clean: np.ndarray,
    peaks: tuple[np.ndarray, np.ndarray],
    blacklist: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Build the four arrays of one chromosome.

    Parameters
    ----------
    noisy, clean : float32[n_bases] coverage of the low-depth and the deep sample
    peaks : (starts, ends) of the clean peaks on this chromosome (0-based, half-open)
    blacklist : (starts, ends) of blacklisted intervals, or None

    Returns
    -------
    {"noisy": float32[n], "clean": float32[n], "labels": uint8[n] (1 in a peak), "mask": uint8[n] (0 blacklisted)}
    """
    n = noisy.size
    if clean.size != n:
        raise ValueError(f"noisy ({n}) and clean ({clean.size}) lengths differ")
    labels = mask_from_intervals(*peaks, n).astype(np.uint8)
    mask = np.ones(n, dtype=np.uint8)
    if blacklist is not None:
        mask[mask_from_intervals(*blacklist, n)] = 0
    return {
        "noisy": np.asarray(noisy, dtype=np.float32),
        "clean": np.asarray(clean, dtype=np.float32),
        "labels": labels,
        "mask": mask,
    }


def narrowest(values: np.ndarray) -> np.ndarray:
    """Return ``values`` in the narrowest type that holds them exactly.

    uint8, uint16 or uint32 when every value is a whole number in range (smoothed cut-site counts
    are), else float32 (coverage with ``cpm``, or a user's track). Read back as float32 the
    result equals the float32 input bit for bit. The check runs in chunks, so it needs no more
    than a chunk of temporary memory beside the array.
    """
    v = np.asarray(values, dtype=np.float32)
    if v.size == 0:
        return v.astype(np.uint8)
    lo, hi = float(v.min()), float(v.max())  # NaN propagates: then no comparison below holds
    if not (lo >= 0 and hi <= np.iinfo(np.uint32).max):
        return v
    for a in range(0, v.size, _CHECK_CHUNK):
        chunk = v[a : a + _CHECK_CHUNK]
        if not np.array_equal(chunk, np.floor(chunk)):
            return v
    for dtype in (np.uint8, np.uint16, np.uint32):
        if hi <= np.iinfo(dtype).max:
            return v.astype(dtype)
    return v  # pragma: no cover (hi is bounded above)


def flags_of(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pack per-base labels (1 = in a clean peak) and mask (1 = usable) into one uint8 array of flags."""
    flags = np.where(np.asarray(labels) != 0, np.uint8(FLAG_LABEL), np.uint8(0))
    flags[np.asarray(mask) != 0] |= np.uint8(FLAG_USABLE)
    return flags


def _new_hash() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=16)


class _HashingWriter:
    """A write-only file wrapper that feeds every byte written to a hash as well."""

    def __init__(self, fh, digest) -> None:
        self._fh, self._digest = fh, digest

    def write(self, data) -> int:
        self._digest.update(data)
        return self._fh.write(data)


def _save_array(path: Path, array: np.ndarray) -> dict:
    """Write ``array`` as a .npy file and return its size and checksum, hashed from the bytes as they are written."""
    digest = _new_hash()
    with open(path, "wb") as fh:
        np.save(_HashingWriter(fh, digest), np.ascontiguousarray(array))
    return {"bytes": path.stat().st_size, "digest": digest.hexdigest(), "dtype": str(array.dtype)}


def file_checksum(path: str | Path) -> str:
    """Return the checksum (:data:`CHECKSUM_ALGORITHM`) of a file's content, read in chunks (memory stays small)."""
    digest = _new_hash()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHECKSUM_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_meta(
    directory: Path, fmt: str, meta: dict, lengths: dict[str, int], files: dict[str, dict], clean_dataset: str = ""
) -> None:
    """Write meta.json: the caller's keys, then the ones the writer owns (format, chroms, checksums, clean part)."""
    own = {"format": fmt, "chroms": lengths, "checksums": {"algorithm": CHECKSUM_ALGORITHM, "files": files}}
    if clean_dataset:
        own["clean_dataset"] = clean_dataset
    meta = {**{k: v for k, v in meta.items() if k not in (*own, "clean_dataset")}, **own}
    (directory / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def _split_meta(meta: dict) -> tuple[dict, dict]:
    """Split a dataset's description into the clean part's keys and the pair's (preprocessing and offsets: both)."""
    clean = {k: v for k, v in meta.items() if k in CLEAN_KEYS or k.startswith("preprocessing")}
    pair = {k: v for k, v in meta.items() if k not in CLEAN_KEYS or k == "offsets"}
    return clean, pair


def write_clean_dataset(out_dir: str | Path, meta: dict, chroms: Iterable[tuple[str, dict[str, np.ndarray]]]) -> None:
    """Write a sample's clean part atomically: ``{chrom}.clean.npy`` (narrowest type) and ``{chrom}.flags.npy``.

    ``chroms`` yields ``(chrom, {"clean", "labels", "mask"})`` one chromosome at a time (memory stays one
    chromosome); meta.json (format :data:`CLEAN_FORMAT`) records each file's size and checksum.
    """
    with atomic_output_dir(out_dir) as tmp:
        lengths, files = {}, {}
        for chrom, arrays in chroms:
            files[f"{chrom}.clean.npy"] = _save_array(tmp / f"{chrom}.clean.npy", narrowest(arrays["clean"]))
            files[f"{chrom}.flags.npy"] = _save_array(
                tmp / f"{chrom}.flags.npy", flags_of(arrays["labels"], arrays["mask"])
            )
            lengths[chrom] = int(np.asarray(arrays["clean"]).size)
        _write_meta(tmp, CLEAN_FORMAT, meta, lengths, files)


def write_pair_dataset(
    out_dir: str | Path, meta: dict, clean_dir: str | Path, chroms: Iterable[tuple[str, np.ndarray]]
) -> None:
    """Write a pair atomically: ``{chrom}.noisy.npy`` (narrowest type) and a meta.json naming its clean part.

    ``clean_dir`` is recorded relative to ``out_dir`` (a results folder moved as a whole still works).
    """
    out_dir = Path(out_dir)
    rel = os.path.relpath(Path(clean_dir).absolute(), out_dir.absolute())
    with atomic_output_dir(out_dir) as tmp:
        lengths, files = {}, {}
        for chrom, noisy in chroms:
            files[f"{chrom}.noisy.npy"] = _save_array(tmp / f"{chrom}.noisy.npy", narrowest(noisy))
            lengths[chrom] = int(np.asarray(noisy).size)
        _write_meta(tmp, META_FORMAT, meta, lengths, files, clean_dataset=rel)


def write_dataset(out_dir: str | Path, meta: dict, chroms: Iterable[tuple[str, dict[str, np.ndarray]]]) -> None:
    """Write a pair and its own clean part (in ``out_dir/clean``) in one step, atomically.

    :func:`atacdenoise.atomic.atomic_output_dir`: the temporary carries host and pid, and the next attempt
    deletes one a killed run of this host left behind.

    ``chroms`` yields ``(chrom, chrom_arrays(...))`` one chromosome at a time (memory stays one chromosome).
    ``meta`` is split between the two meta.json files (:data:`CLEAN_KEYS`). The workflow instead writes one
    clean part per sample and a pair per noisy input (:func:`write_clean_dataset`, :func:`write_pair_dataset`).
    """
    clean_meta, pair_meta = _split_meta(meta)
    with atomic_output_dir(out_dir) as tmp:
        inner = tmp / INNER_CLEAN
        inner.mkdir()
        lengths, files, clean_files = {}, {}, {}
        for chrom, arrays in chroms:
            files[f"{chrom}.noisy.npy"] = _save_array(tmp / f"{chrom}.noisy.npy", narrowest(arrays["noisy"]))
            clean_files[f"{chrom}.clean.npy"] = _save_array(inner / f"{chrom}.clean.npy", narrowest(arrays["clean"]))
            clean_files[f"{chrom}.flags.npy"] = _save_array(
                inner / f"{chrom}.flags.npy", flags_of(arrays["labels"], arrays["mask"])
            )
            lengths[chrom] = int(np.asarray(arrays["noisy"]).size)
        _write_meta(inner, CLEAN_FORMAT, clean_meta, lengths, clean_files)
        _write_meta(tmp, META_FORMAT, pair_meta, lengths, files, clean_dataset=INNER_CLEAN)


class ChromArrays(Mapping):
    """The arrays of one chromosome by name (:data:`ARRAYS`), for whole-chromosome use (counts, sums, profiles).

    ``noisy`` and ``clean`` are the stored memory maps (their storage type: use ``dtype=`` in sums);
    ``labels`` and ``mask`` are decoded from the flags on access (uint8 0/1, the chromosome's length in
    memory). Windows do not go through here: :func:`read_window` decodes only their own bases.
    """

    def __init__(self, stored: dict[str, np.ndarray]) -> None:
        self.stored = stored

    def __getitem__(self, name: str) -> np.ndarray:
        if name in ("labels", "mask"):
            bit = FLAG_LABEL if name == "labels" else FLAG_USABLE
            return (np.asarray(self.stored["flags"]) & bit != 0).view(np.uint8)
        return self.stored[name]

    def __iter__(self) -> Iterator[str]:
        return iter(ARRAYS)

    def __len__(self) -> int:
        return len(ARRAYS)


@dataclass
class PairData:
    """One pair (its directory and its clean part's); arrays memory-mapped on first use (per process, not pickled).

    ``meta`` is the clean part's meta.json overlaid with the pair's (without ``checksums``, ``format`` and
    ``chroms``, which each file keeps for itself: :attr:`checksums`, :attr:`chroms`).
    """

    path: Path
    meta: dict
    clean_path: Path | None = None
    #: ``{"pair": {...}, "clean": {...}}``: each directory's recorded ``checksums``
    checksums: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)
    #: factors applied to the noisy and clean arrays of every window (depth normalisation; 1 = as stored)
    scale: dict = field(default_factory=lambda: {"noisy": 1.0, "clean": 1.0})

    @property
    def chroms(self) -> dict[str, int]:
        """Return the dataset's chromosomes and their lengths, in the dataset's order."""
        return self.meta["chroms"]

    @property
    def name(self) -> str:
        """Return ``sample/depth.repN``, the dataset's name in logs and messages."""
        m = self.meta
        return f"{m.get('sample', '?')}/{m.get('depth', '?')}.rep{m.get('rep', '?')}"

    def offset(self, chrom: str) -> int:
        """Return the genome coordinate of the first stored base of ``chrom`` (0 unless target regions were used)."""
        return int(self.meta.get("offsets", {}).get(chrom, 0))

    def target(self, chrom: str) -> list[tuple[int, int]] | None:
        """Return the target regions of ``chrom`` in stored coordinates, or None when the whole chromosome counts."""
        regions = self.meta.get("regions")
        if regions is None:
            return None
        return [(int(a), int(b)) for a, b in regions.get(chrom, [])]

    def files(self) -> Iterator[tuple[str, Path]]:
        """Yield ``(role, path)`` of every array file: role ``pair`` (noisy) or ``clean`` (clean track, flags)."""
        clean = self.clean_path if self.clean_path is not None else self.path
        for chrom in self.chroms:
            yield "pair", self.path / f"{chrom}.noisy.npy"
            yield "clean", clean / f"{chrom}.clean.npy"
            yield "clean", clean / f"{chrom}.flags.npy"

    def stored(self, chrom: str) -> dict[str, np.ndarray]:
        """Return the stored arrays of ``chrom`` (``noisy``, ``clean``, ``flags``), memory-mapped and cached."""
        if chrom not in self._cache:
            clean = self.clean_path if self.clean_path is not None else self.path
            self._cache[chrom] = {
                "noisy": np.load(self.path / f"{chrom}.noisy.npy", mmap_mode="r"),
                "clean": np.load(clean / f"{chrom}.clean.npy", mmap_mode="r"),
                "flags": np.load(clean / f"{chrom}.flags.npy", mmap_mode="r"),
            }
        return self._cache[chrom]

    def arrays(self, chrom: str) -> ChromArrays:
        """Return the arrays of ``chrom`` by name (:class:`ChromArrays`)."""
        return ChromArrays(self.stored(chrom))

    def total(self, name: str) -> float:
        """Total signal of the ``noisy`` or ``clean`` track over all the dataset's chromosomes (float64 sum)."""
        return float(sum(np.sum(self.stored(c)[name], dtype=np.float64) for c in self.chroms))

    def __getstate__(self) -> dict:  # DataLoader workers re-open the memory maps themselves
        return {
            "path": self.path,
            "meta": self.meta,
            "clean_path": self.clean_path,
            "checksums": self.checksums,
            "_cache": {},
            "scale": dict(self.scale),
        }


def _read_meta(path: Path, formats: tuple[str, ...], what: str) -> dict:
    meta_path = path / "meta.json"
    if not meta_path.exists():
        raise InputError(f"{path}: not a {what} directory (no meta.json); make it with 'atacdenoise {what}'")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{meta_path}: unreadable JSON ({exc}); re-make the {what}") from exc
    if not isinstance(meta, dict):
        raise InputError(f"{meta_path}: not a JSON object; re-make the {what}")
    if meta.get("format") in OLD_FORMATS:
        raise InputError(
            f"{meta_path}: format {meta.get('format')!r}, made by an older atacdenoise (float32 copies of the clean "
            f"track in every pair); delete {path} and re-make it (snakemake re-runs the dataset rules)"
        )
    if meta.get("format") not in formats or not isinstance(meta.get("chroms"), dict):
        raise InputError(f"{meta_path}: format {meta.get('format')!r}, expected {formats[0]!r}; re-make the {what}")
    return meta


def open_dataset(path: str | Path, sizes: dict[str, int] | None = None) -> PairData:
    """Open a pair directory and its clean part, checking their meta.json, files and (with ``sizes``) lengths."""
    path = Path(path)
    meta = _read_meta(path, (META_FORMAT,), "dataset")
    rel = meta.get("clean_dataset")
    if not isinstance(rel, str) or not rel:
        raise InputError(f"{path / 'meta.json'}: names no clean part (clean_dataset); re-make the dataset")
    clean_path = Path(os.path.normpath(path / rel))
    if not clean_path.is_dir():
        raise InputError(
            f"{path}: its clean part {clean_path} (clean_dataset: {rel!r} in meta.json) is missing; "
            "make it with 'atacdenoise dataset-clean' (snakemake: the dataset_clean rule), then re-make this pair"
        )
    clean_meta = _read_meta(clean_path, (CLEAN_FORMAT,), "dataset-clean")
    if clean_meta["chroms"] != meta["chroms"] or clean_meta.get("offsets") != meta.get("offsets"):
        raise InputError(
            f"{path}: its chromosomes or stored spans differ from those of its clean part {clean_path} (re-made since "
            "with other chromosomes or target regions?); re-make the pair"
        )
    checksums = {"pair": meta.get("checksums") or {}, "clean": clean_meta.get("checksums") or {}}
    merged = {k: v for k, v in clean_meta.items() if k not in ("format", "checksums")}
    merged.update({k: v for k, v in meta.items() if k not in ("checksums",)})
    pair = PairData(path, merged, clean_path, checksums)
    full = merged.get("chrom_sizes", merged["chroms"])
    for _, f in pair.files():
        if not f.exists():
            raise InputError(f"{f}: missing from the dataset; re-make the dataset")
    for chrom in pair.chroms:
        length = full[chrom]
        if sizes is not None and chrom in sizes and sizes[chrom] != length:
            raise InputError(
                f"{path}: chromosome {chrom} is {length:,} bp there but {sizes[chrom]:,} bp in the genome sizes file; "
                "the dataset was made on another assembly: re-make it with the matching sizes file"
            )
    if not merged.get("cell_type"):
        log.info(
            "%s: meta.json records no cell_type (made without 'atacdenoise dataset-clean --cell-type'): a model "
            "trained on it does not list its cell type in trained_cell_types",
            path,
        )
    return pair


def dataset_content_id(pair: PairData) -> dict:
    """Return what identifies a dataset's content: its meta.json files and each array file's size and checksum.

    Checkpoints are tied to this (``train.settings_hash``), so a dataset re-made at the same path
    with other content never resumes an old training run, even when its summary statistics and its
    meta.json text are otherwise the same. It covers the pair and its clean part. The checksums come
    from each meta.json, where the writers store them while writing: the bytes are hashed as they
    pass from memory to the file, so the cost is a hash of data already in hand (about 1.5 s per GB)
    and nothing is read back; training pays only a ``stat`` per file. A dataset directory appears by
    one rename of a complete temporary directory, so a meta.json and the arrays it describes always
    change together; the current sizes are compared with the recorded ones to catch a file that was
    truncated or swapped afterwards. (Size and modification time alone would not do: a re-made
    dataset has new times even when its content is identical, which would throw away a valid
    checkpoint, and a copy with preserved times and other content would pass.) A directory whose
    meta.json records no checksums is hashed here, file by file in 8-MiB chunks.
    """
    meta_text = json.dumps(pair.meta, sort_keys=True)
    files: dict[str, list] = {}
    for role, path in pair.files():
        recorded = pair.checksums.get(role) or {}
        entries = recorded.get("files") if recorded.get("algorithm") == CHECKSUM_ALGORITHM else None
        size = path.stat().st_size
        key = f"{role}:{path.name}"
        if entries is None:
            log.info("%s: its meta.json records no checksums: hashing %s", path.parent, path.name)
            files[key] = [size, file_checksum(path)]
            continue
        entry = entries.get(path.name)
        if not isinstance(entry, dict) or entry.get("bytes") != size:
            raise InputError(
                f"{path}: {size:,} bytes, but meta.json records "
                f"{entry.get('bytes') if isinstance(entry, dict) else 'no such file'}: the file was changed after "
                "the dataset was made; re-make the dataset"
            )
        files[key] = [size, entry.get("digest")]
    return {"meta": hashlib.sha256(meta_text.encode()).hexdigest(), "files": files}


def check_same_preprocessing(pairs: list[PairData]) -> dict:
    """Return the preprocessing shared by all datasets (raise when they differ on smoothing, shifts or CPM)."""
    first = pairs[0].meta.get("preprocessing") or {}
    for p in pairs[1:]:
        other = p.meta.get("preprocessing") or {}
        for key in MUST_MATCH:
            if first.get(key) != other.get(key):
                raise InputError(
                    f"datasets {pairs[0].path} and {p.path} were made with different {key} "
                    f"({first.get(key)!r} vs {other.get(key)!r}); "
                    "one model needs coverage made with the same settings: re-make the coverage of one of them"
                )
    return {k: first[k] for k in PREPROCESSING_KEYS if k in first}


# --------------------------------------------------------------------------- windows
def regions_by_chrom(regions: Iterable[Region]) -> dict[str, list[tuple[int, int]]]:
    """Group regions as ``{chrom: [(start, end), ...]}``."""
    out: dict[str, list[tuple[int, int]]] = {}
    for r in regions:
        out.setdefault(r.chrom, []).append((r.start, r.end))
    return out


def allowed_starts(
    length: int, interval: int, pad: int, excluded: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Half-open ranges ``[lo, hi)`` of training-window centre starts on one chromosome.

    A centre start ``s`` spans ``[s, s + interval)`` inside the chromosome (``s = 0`` only when the
    chromosome is shorter than ``interval``) and its whole window ``[s - pad, s + interval + pad)``
    stays clear of every excluded ``(start, end)`` region.
    """
    lo = np.array([0], dtype=np.int64)
    hi = np.array([max(length - interval, 0) + 1], dtype=np.int64)
    for a, b in excluded:
        # windows overlapping [a, b): s - pad < b and s + interval + pad > a
        cut_lo, cut_hi = a - interval - pad + 1, b + pad
        keep_left = (lo < cut_lo, lo, np.minimum(hi, cut_lo))
        keep_right = (hi > cut_hi, np.maximum(lo, cut_hi), hi)
        lo = np.concatenate((keep_left[1][keep_left[0]], keep_right[1][keep_right[0]]))
        hi = np.concatenate((keep_left[2][keep_left[0]], keep_right[2][keep_right[0]]))
        order = np.argsort(lo, kind="stable")
        lo, hi = lo[order], hi[order]
    return lo, hi


@dataclass
class StartTable:
    """Every allowed training-window centre start across datasets, as ranges to sample from uniformly."""

    pair: np.ndarray  # int32[n_ranges]
    chrom: np.ndarray  # int32[n_ranges]
    lo: np.ndarray  # int64[n_ranges]
    hi: np.ndarray  # int64[n_ranges]

    @property
    def total(self) -> int:
        """Return the number of allowed centre starts over all ranges."""
        return int((self.hi - self.lo).sum())


def keep_overlapping(
    lo: np.ndarray, hi: np.ndarray, interval: int, regions: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Restrict centre-start ranges ``[lo, hi)`` to starts whose centre ``[s, s + interval)`` overlaps a region."""
    if not regions:
        return lo[:0], hi[:0]
    a = np.array([r[0] - interval + 1 for r in regions], dtype=np.int64)
    b = np.array([r[1] for r in regions], dtype=np.int64)
    # pairwise intersection of the two sorted range lists (few regions per chromosome and dataset)
    new_lo = np.maximum(lo[:, None], a[None, :]).ravel()
    new_hi = np.minimum(hi[:, None], b[None, :]).ravel()
    # ranges of neighbouring regions may overlap: merge them so that no start is counted twice
    return merge_intervals(new_lo, new_hi)


def start_table(pairs: list[PairData], interval: int, pad: int, exclude: Iterable[Region]) -> StartTable:
    """Ranges of allowed centre starts for every dataset and chromosome (``exclude``: val + holdout regions).

    With target regions (:meth:`PairData.target`) only windows overlapping one are allowed.
    """
    excl = regions_by_chrom(exclude)
    parts: list[tuple[int, int, np.ndarray, np.ndarray]] = []
    for i, p in enumerate(pairs):
        for j, (chrom, length) in enumerate(p.chroms.items()):
            off = p.offset(chrom)
            lo, hi = allowed_starts(length, interval, pad, [(a - off, b - off) for a, b in excl.get(chrom, [])])
            target = p.target(chrom)
            if target is not None:
                lo, hi = keep_overlapping(lo, hi, interval, target)
            parts.append((i, j, lo, hi))
    lo = np.concatenate([x[2] for x in parts]) if parts else np.zeros(0, np.int64)
    hi = np.concatenate([x[3] for x in parts]) if parts else np.zeros(0, np.int64)
    pair = np.concatenate([np.full(x[2].size, x[0], np.int32) for x in parts]) if parts else np.zeros(0, np.int32)
    chrom = np.concatenate([np.full(x[2].size, x[1], np.int32) for x in parts]) if parts else np.zeros(0, np.int32)
    table = StartTable(pair, chrom, lo, hi)
    if table.total == 0:
        raise InputError(
            "no training windows left: the validation and holdout regions (plus a window's context) "
            "cover every chromosome of the datasets; "
            "give the datasets more chromosomes or shrink split.val_chroms / split.holdout_chroms"
        )
    return table


def sample_windows(table: StartTable, n: int, interval: int, rng: np.random.Generator, flip: bool = True) -> np.ndarray:
    """``n`` training windows drawn uniformly over all allowed centre starts; half strand-flipped at random."""
    counts = table.hi - table.lo
    cum = np.cumsum(counts)
    draw = rng.integers(0, int(cum[-1]), size=n)
    k = np.searchsorted(cum, draw, side="right")
    out = np.zeros(n, dtype=WINDOW_DTYPE)
    out["pair"] = table.pair[k]
    out["chrom"] = table.chrom[k]
    out["start"] = table.lo[k] + (draw - (cum[k] - counts[k]))
    out["stop"] = out["start"] + interval
    out["flip"] = rng.random(n) < 0.5 if flip else False
    return out


def fixed_tiles(pairs: list[PairData], regions: Iterable[Region], interval: int) -> np.ndarray:
    """Return fixed, unflipped tiles of ``interval`` bases over each region of each dataset holding its chromosome.

    The last tile of a region ends at the region's end (its ``stop``); context may reach outside the region.
    With target regions, regions are first cut to them (tiles only where there are data).
    """
    rows = []
    for i, p in enumerate(pairs):
        index = {c: j for j, c in enumerate(p.chroms)}
        for r in regions:
            if r.chrom not in index:
                continue
            off = p.offset(r.chrom)
            target = p.target(r.chrom)
            parts = [(r.start - off, r.end - off)]
            if target is not None:
                parts = [(max(a, r.start - off), min(b, r.end - off)) for a, b in target]
            for a, b in parts:
                if a >= b:
                    continue
                starts = np.arange(a, b, interval, dtype=np.int64)
                t = np.zeros(starts.size, dtype=WINDOW_DTYPE)
                t["pair"], t["chrom"], t["start"] = i, index[r.chrom], starts
                t["stop"] = np.minimum(starts + interval, b)
                rows.append(t)
    return np.concatenate(rows) if rows else np.zeros(0, dtype=WINDOW_DTYPE)


def extract(array: np.ndarray, start: int, length: int) -> np.ndarray:
    """``array[start : start + length]`` with zeros where the range runs past either end."""
    out = np.zeros(length, dtype=array.dtype)
    lo, hi = max(start, 0), min(start + length, array.size)
    if hi > lo:
        out[lo - start : hi - start] = array[lo:hi]
    return out


#: the stored types a window's coverage is handed on in (:func:`wire_types`): one per :class:`WindowSet`, so that
#: every window of a batch stacks; uint16 travels as its int16 view (types every PyTorch device supports)
WIRE_TYPES = (np.dtype(np.uint8), np.dtype(np.int16), np.dtype(np.float32))


def wire_types(pairs: list[PairData]) -> dict[str, np.dtype]:
    """Return the type each coverage array (``noisy``, ``clean``) of ``pairs`` is handed on in: the narrowest.

    uint8 where every chromosome of every pair stores uint8, int16 (a uint16 view) where uint16 is the widest,
    float32 otherwise (uint32 counts, ``cpm`` coverage).
    """
    out = {}
    for name in ("noisy", "clean"):
        kinds = {pair.stored(chrom)[name].dtype for pair in pairs for chrom in pair.chroms}
        if kinds <= {np.dtype(np.uint8)}:
            out[name] = WIRE_TYPES[0]
        elif kinds <= {np.dtype(np.uint8), np.dtype(np.uint16)}:
            out[name] = WIRE_TYPES[1]
        else:
            out[name] = WIRE_TYPES[2]
    return out


def _to_wire(values: np.ndarray, wire: np.dtype) -> np.ndarray:
    if wire == np.int16:
        return values.astype(np.uint16, copy=False).view(np.int16)
    return values.astype(wire, copy=False)


def read_window_stored(
    pair: PairData,
    chrom: str,
    start: int,
    stop: int,
    interval: int,
    pad: int,
    flip: bool,
    wire: dict[str, np.dtype] | None = None,
) -> dict[str, np.ndarray]:
    """Read one window as stored: what the training loader hands on, decoded on the device (:func:`decode_batch`).

    ``noisy`` and ``clean`` in their ``wire`` types (default: float32), ``flags`` uint8 (bit 0 in a peak, bit 1
    usable, cleared outside the chromosome, on blacklisted bases and outside the loss zone ``[start, stop)``),
    ``scale`` float32[2] (the pair's factors for noisy and clean), each array ``interval + 2 * pad`` bases long;
    ``flip`` reverses them (the other strand: coverage is strand-symmetric). 4-5 bytes a base on the demo
    instead of the 16 of four float32 arrays: fewer bytes through the workers' shared memory, the pinned copy
    and the copy to the GPU (issue 23).
    """
    stored = pair.stored(chrom)
    w = interval + 2 * pad
    wire = wire or {"noisy": WIRE_TYPES[2], "clean": WIRE_TYPES[2]}
    flags = extract(stored["flags"], start - pad, w)
    flags[:pad] &= np.uint8(~FLAG_USABLE & 0xFF)
    flags[pad + (stop - start) :] &= np.uint8(~FLAG_USABLE & 0xFF)
    out = {
        "noisy": _to_wire(extract(stored["noisy"], start - pad, w), wire["noisy"]),
        "clean": _to_wire(extract(stored["clean"], start - pad, w), wire["clean"]),
        "flags": flags,
    }
    if flip:
        out = flip_window(out)
    out["scale"] = np.array([pair.scale["noisy"], pair.scale["clean"]], dtype=np.float32)
    return out


def decode_window(window: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Decode a window of :func:`read_window_stored` into the four float32 arrays (:data:`ARRAYS`), in NumPy.

    The same values as :func:`decode_batch` gives on a device, bit for bit (tested).
    """
    flags, (fn, fc) = window["flags"], window["scale"]
    out = {}
    for name, factor in (("noisy", fn), ("clean", fc)):
        v = window[name]
        v = (v.view(np.uint16) if v.dtype == np.int16 else v).astype(np.float32, copy=False)
        out[name] = v * factor if factor != 1.0 else v
    out["labels"] = (flags & FLAG_LABEL).astype(np.float32)
    out["mask"] = ((flags & FLAG_USABLE) != 0).astype(np.float32)
    return out


def decode_batch(batch: dict) -> dict:
    """Decode a collated batch of :func:`read_window_stored` windows into four float32 ``[B, W]`` tensors there.

    Run on the device after the copy (``int16`` is a uint16 view; each window's factors multiply its row); a
    batch of float32 windows (:func:`read_window`) is returned as it is.
    """
    import torch  # here: making and reading datasets needs no torch

    if "flags" not in batch:
        return batch
    flags, scale = batch["flags"], batch["scale"].float()
    out = {}
    for i, name in enumerate(("noisy", "clean")):
        v = batch[name]
        if v.dtype == torch.int16:  # the uint16 view
            v = v.int().bitwise_and_(0xFFFF)
        out[name] = v.float() * scale[:, i : i + 1]
    out["labels"] = (flags & FLAG_LABEL).float()
    out["mask"] = (flags & FLAG_USABLE).ne(0).float()
    return out


def read_window(
    pair: PairData, chrom: str, start: int, stop: int, interval: int, pad: int, flip: bool
) -> dict[str, np.ndarray]:
    """Read the four arrays of one window (:data:`ARRAYS`), float32[interval + 2 * pad] each.

    The mask is 0 outside the chromosome, on blacklisted bases and outside the loss zone
    ``[start, stop)``; ``flip`` reverses every array (the other strand: coverage is strand-symmetric).
    Only the window's own bases are read and decoded from their storage types.
    """
    return decode_window(read_window_stored(pair, chrom, start, stop, interval, pad, flip))


def flip_window(window: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reverse every array of a window along the genome (strand flip), consistently."""
    return {name: np.ascontiguousarray(a[..., ::-1]) for name, a in window.items()}


class WindowSet:
    """Map-style dataset (for ``torch.utils.data.DataLoader``) over a table of windows.

    Each window comes as stored (:func:`read_window_stored`, coverage in :func:`wire_types`), for
    :func:`decode_batch` to decode where the model runs; ``decoded=True``: the four float32 arrays
    (:func:`read_window`).
    """

    def __init__(self, pairs: list[PairData], windows: np.ndarray, interval: int, pad: int, decoded: bool = False):
        self.pairs = pairs
        self.windows = windows
        self.interval = interval
        self.pad = pad
        self.decoded = decoded
        self.wire = wire_types(pairs)
        self._chroms = [list(p.chroms) for p in pairs]

    def __len__(self) -> int:
        return int(self.windows.size)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        w = self.windows[i]
        pair = self.pairs[int(w["pair"])]
        chrom = self._chroms[int(w["pair"])][int(w["chrom"])]
        args = (pair, chrom, int(w["start"]), int(w["stop"]), self.interval, self.pad, bool(w["flip"]))
        if self.decoded:
            return read_window(*args)
        return read_window_stored(*args, wire=self.wire)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self[i] for i in range(len(self)))


# --------------------------------------------------------------------------- from bigWigs to a dataset


def sidecar_preprocessing(side: dict) -> dict:
    """Return the preprocessing keys of a coverage sidecar, each missing one at its default."""
    return {k: side.get(k, DEFAULT_PREPROCESSING[k]) for k in PREPROCESSING_KEYS}


def _warn_no_sidecar(path: Path) -> None:
    log.warning("%s has no sidecar %s.json (user-supplied bigWig?): its preprocessing is unknown", path, path)


def pair_preprocessing(noisy: Path, clean: Path) -> tuple[dict, str]:
    """Preprocessing of a noisy/clean pair from their sidecars, and where it came from (``sidecar`` or defaults).

    Refuses a pair smoothed or shifted differently (:data:`MUST_MATCH`): the
    network must see input made like its target.
    """
    side = {"noisy": read_sidecar(noisy), "clean": read_sidecar(clean)}
    if side["noisy"] and side["clean"]:
        for key in MUST_MATCH:
            a, b = side["noisy"].get(key), side["clean"].get(key)
            if a != b:
                raise InputError(
                    f"{noisy} and {clean}: made with different {key} ({a!r} in {noisy}.json vs {b!r} in {clean}.json); "
                    "the network must see input made like its target: re-make both coverage tracks with the same "
                    "settings"
                )
    for path, found in ((noisy, side["noisy"]), (clean, side["clean"])):
        if found is None:
            _warn_no_sidecar(path)
    found = side["noisy"] or side["clean"]
    if found is None:
        log.warning("no preprocessing sidecar for either track: assuming the defaults %s", DEFAULT_PREPROCESSING)
        return dict(DEFAULT_PREPROCESSING), "assumed defaults"
    return sidecar_preprocessing(found), "sidecar"


def _read_blacklist(path: Path | None, sizes: dict[str, int]) -> pd.DataFrame | None:
    if path is None:
        return None
    df = read_bed(path)
    if len(df) and not set(df["chrom"]) & set(sizes):
        log.warning(
            "%s: no blacklisted interval on the genome's chromosomes %s.%s",
            path,
            list(sizes)[:5],
            naming_hint(set(df["chrom"]), sizes),
        )
    return df


def _chrom_intervals(df: pd.DataFrame, chrom: str) -> tuple[np.ndarray, np.ndarray]:
    sub = df[df["chrom"] == chrom]
    return sub["start"].to_numpy(), sub["end"].to_numpy()


def _clean_meta(
    clean: Path, labels: Path, blacklist: Path | None, sample: str, cell_type: str, preprocessing: dict, source: str
) -> dict:
    return {
        "sample": sample,
        "cell_type": cell_type,
        "preprocessing": preprocessing,
        "preprocessing_source": source,
        "clean": str(clean),
        "labels": str(labels),
        "blacklist": str(blacklist) if blacklist else None,
    }


def _spans(sizes: dict[str, int], target: TargetRegions | None, meta: dict) -> tuple[dict, dict]:
    """Return the chromosomes kept and their stored spans; with target regions, record them in ``meta``."""
    if target is None:
        return sizes, {c: (0, n) for c, n in sizes.items()}
    sizes = restrict_sizes(sizes, target)
    spans = {c: target.span(c) for c in sizes}
    meta["target_regions"] = target.path
    meta["offsets"] = {c: a for c, (a, _) in spans.items()}
    meta["chrom_sizes"] = dict(sizes)
    meta["regions"] = {
        c: [[int(a) - spans[c][0], int(b) - spans[c][0]] for a, b in zip(target.starts[c], target.ends[c])]
        for c in sizes
    }
    return sizes, spans


def _clean_chroms(
    clean: Path,
    labels: Path,
    genome: dict[str, int],
    sizes: dict[str, int],
    spans: dict[str, tuple[int, int]],
    blacklist: Path | None,
    target: TargetRegions | None,
    noisy: Path | None = None,
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Yield ``(chrom, chrom_arrays(...))`` per chromosome (``noisy`` read too when given, else zeros of no cost)."""
    peaks = read_narrowpeak(labels, genome)  # names checked against the genome, not only the selection
    peaks = peaks[peaks["chrom"].isin(list(sizes))]
    if len(peaks) == 0:
        log.warning("%s: no peaks on %s: every label is 0", labels, list(sizes)[:5])
    masked = _read_blacklist(blacklist, genome)

    def shifted(df: pd.DataFrame | None, chrom: str) -> tuple[np.ndarray, np.ndarray] | None:
        if df is None:
            return None
        a, b = _chrom_intervals(df, chrom)
        return a - spans[chrom][0], b - spans[chrom][0]

    bw_clean = open_bigwig(clean)
    bw_noisy = open_bigwig(noisy) if noisy is not None else None
    try:
        for chrom in progress(sizes, total=len(sizes), desc="dataset", unit="chrom"):
            lo, hi = spans[chrom]
            clean_values = read_bigwig(clean, chrom, lo, hi, bw=bw_clean)
            noisy_values = read_bigwig(noisy, chrom, lo, hi, bw=bw_noisy) if noisy is not None else clean_values
            arrays = chrom_arrays(noisy_values, clean_values, shifted(peaks, chrom), shifted(masked, chrom))
            if target is not None:  # bases between target regions were not measured: no loss there
                inside = mask_from_intervals(target.starts[chrom] - lo, target.ends[chrom] - lo, hi - lo)
                arrays["mask"][~inside] = 0
            log.info(
                "%s: %s bp, %.2f%% in peaks, %.2f%% blacklisted, clean sum %.4g%s",
                chrom,
                f"{hi - lo:,}",
                100 * arrays["labels"].mean(),
                100 * (1 - arrays["mask"].mean()),
                arrays["clean"].sum(dtype=np.float64),
                f", noisy sum {arrays['noisy'].sum(dtype=np.float64):.4g}" if noisy is not None else "",
            )
            yield chrom, arrays
    finally:
        bw_clean.close()
        if bw_noisy is not None:
            bw_noisy.close()


def build_clean_dataset(
    clean: Path,
    labels: Path,
    genome: dict[str, int],
    sizes: dict[str, int],
    out: Path,
    blacklist: Path | None = None,
    sample: str = "",
    target: TargetRegions | None = None,
    cell_type: str = "",
) -> None:
    """Write a sample's clean part: its deep coverage bigWig and per-base flags (clean peaks, blacklist, targets).

    ``genome`` is every chromosome of the sizes file (peak and blacklist names are checked against it),
    ``sizes`` the chromosomes to keep. ``meta.json`` records the sample, cell type, preprocessing (from the
    clean track's sidecar), sources and labels; the directory appears only when complete. With ``target``
    regions only their span is stored per chromosome (see the module docstring).
    """
    check_bigwig(clean, sizes)
    side = read_sidecar(clean)
    if side is None:
        _warn_no_sidecar(clean)
        preprocessing, source = dict(DEFAULT_PREPROCESSING), "assumed defaults"
    else:
        preprocessing, source = sidecar_preprocessing(side), "sidecar"
    meta = _clean_meta(clean, labels, blacklist, sample, cell_type, preprocessing, source)
    sizes, spans = _spans(sizes, target, meta)
    chroms = _clean_chroms(clean, labels, genome, sizes, spans, blacklist, target)
    write_clean_dataset(out, meta, ((c, a) for c, a in chroms))


def open_clean_dataset(path: Path) -> dict:
    """Return the meta.json of a clean part (checked), for making a pair from it."""
    return _read_meta(Path(path), (CLEAN_FORMAT,), "dataset-clean")


def build_pair_dataset(
    noisy: Path, clean_dir: Path, sizes: dict[str, int], out: Path, depth: str = "", rep: str = ""
) -> None:
    """Write one pair: the noisy coverage bigWig over the chromosomes and spans of its sample's clean part.

    The noisy track's preprocessing (sidecar) must match the clean part's on :data:`MUST_MATCH`: the
    network must see input made like its target.
    """
    clean_meta = open_clean_dataset(clean_dir)
    chroms = clean_meta["chroms"]
    check_bigwig(noisy, {c: sizes.get(c, n) for c, n in clean_meta.get("chrom_sizes", chroms).items()})
    for chrom, length in clean_meta.get("chrom_sizes", chroms).items():
        if chrom in sizes and sizes[chrom] != length:
            raise InputError(
                f"{clean_dir}: chromosome {chrom} is {length:,} bp there but {sizes[chrom]:,} bp in the genome sizes "
                "file; the clean part was made on another assembly: re-make it with the matching sizes file"
            )
    side = read_sidecar(noisy)
    clean_pre = clean_meta.get("preprocessing") or {}
    if side is None:
        _warn_no_sidecar(noisy)
        preprocessing, source = dict(clean_pre), clean_meta.get("preprocessing_source", "assumed defaults")
    else:
        preprocessing, source = sidecar_preprocessing(side), "sidecar"
        if clean_meta.get("preprocessing_source") == "sidecar":
            for key in MUST_MATCH:
                if preprocessing.get(key) != clean_pre.get(key):
                    raise InputError(
                        f"{noisy} and {clean_meta.get('clean')}: made with different {key} "
                        f"({preprocessing.get(key)!r} in {noisy}.json vs {clean_pre.get(key)!r} in "
                        f"{clean_dir}/meta.json); "
                        "the network must see input made like its target: re-make both coverage tracks with the same "
                        "settings"
                    )
    meta = {
        "depth": depth,
        "rep": rep,
        "preprocessing": preprocessing,
        "preprocessing_source": source,
        "noisy": str(noisy),
    }
    if "offsets" in clean_meta:
        meta["offsets"] = clean_meta["offsets"]
    offsets = clean_meta.get("offsets") or {}
    bw = open_bigwig(noisy)

    def values() -> Iterator[tuple[str, np.ndarray]]:
        for chrom, length in progress(chroms.items(), total=len(chroms), desc="dataset", unit="chrom"):
            lo = int(offsets.get(chrom, 0))
            v = read_bigwig(noisy, chrom, lo, lo + int(length), bw=bw)
            log.info("%s: %s bp, noisy sum %.4g", chrom, f"{int(length):,}", v.sum(dtype=np.float64))
            yield chrom, v

    try:
        write_pair_dataset(out, meta, clean_dir, values())
    finally:
        bw.close()


def build_dataset(
    noisy: Path,
    clean: Path,
    labels: Path,
    genome: dict[str, int],
    sizes: dict[str, int],
    out: Path,
    blacklist: Path | None = None,
    sample: str = "",
    depth: str = "",
    rep: str = "",
    target: TargetRegions | None = None,
    cell_type: str = "",
) -> None:
    """Write one pair with its own clean part inside (``out/clean``) in one step, from the coverage bigWigs.

    As :func:`build_clean_dataset` and :func:`build_pair_dataset` together, for one pair outside the workflow
    (which stores the clean part once per sample instead).
    """
    for bw in (noisy, clean):
        check_bigwig(bw, sizes)
    preprocessing, source = pair_preprocessing(noisy, clean)
    meta = _clean_meta(clean, labels, blacklist, sample, cell_type, preprocessing, source)
    meta.update({"depth": depth, "rep": rep, "noisy": str(noisy)})
    sizes, spans = _spans(sizes, target, meta)
    write_dataset(out, meta, _clean_chroms(clean, labels, genome, sizes, spans, blacklist, target, noisy=noisy))
