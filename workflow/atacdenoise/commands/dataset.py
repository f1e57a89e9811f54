"""Per-chromosome training arrays (noisy, clean, peak labels, blacklist mask) of one noisy/clean pair.

Writes DIR/{chrom}.{noisy,clean,labels,mask}.npy and DIR/meta.json for every
chromosome (the validation/holdout split is applied at training time). The
directory appears only when complete.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from atacdenoise.checks import check_writable
from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import check_bigwig, open_bigwig, read_bigwig
from atacdenoise.io.genome import naming_hint, read_chrom_sizes, select_chroms
from atacdenoise.io.intervals import read_bed, read_narrowpeak
from atacdenoise.log import progress
from atacdenoise.model.dataset import DEFAULT_PREPROCESSING, MUST_MATCH, PREPROCESSING_KEYS, chrom_arrays, write_dataset

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--noisy", required=True, type=Path, help="coverage bigWig of the low-depth sample (network input)"
    )
    parser.add_argument(
        "--clean", required=True, type=Path, help="coverage bigWig of the deep sample (regression target)"
    )
    parser.add_argument(
        "--labels", required=True, type=Path, help="clean peaks (narrowPeak or BED): classification target"
    )
    parser.add_argument("--sizes", required=True, type=Path, help="genome chromosome sizes file")
    parser.add_argument(
        "--chroms", nargs="+", default=None, help="chromosomes to keep (default: all but chrM and unplaced contigs)"
    )
    parser.add_argument(
        "--blacklist", type=Path, default=None, help="BED(.gz) of blacklisted regions, masked out of the loss"
    )
    parser.add_argument("--out", required=True, type=Path, help="output dataset directory")
    parser.add_argument("--sample", required=True, help="sample name (recorded in meta.json)")
    parser.add_argument("--depth", required=True, help="depth label of the noisy input (recorded in meta.json)")
    parser.add_argument("--rep", required=True, help="replicate of the noisy input (recorded in meta.json)")


def read_sidecar(bigwig: Path) -> dict | None:
    """The preprocessing sidecar ``X.bw.json`` of a coverage bigWig, or None when there is none."""
    path = Path(f"{bigwig}.json")
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: unreadable JSON sidecar ({exc}); re-make the coverage or delete the sidecar"
        ) from exc


def pair_preprocessing(noisy: Path, clean: Path) -> tuple[dict, str]:
    """Preprocessing of the pair, from the sidecars; refuses a pair smoothed or shifted differently."""
    side = {"noisy": read_sidecar(noisy), "clean": read_sidecar(clean)}
    if side["noisy"] and side["clean"]:
        for key in MUST_MATCH:
            a, b = side["noisy"].get(key), side["clean"].get(key)
            if a != b:
                raise InputError(
                    f"{noisy} and {clean}: made with different {key} ({a!r} in {noisy}.json vs {b!r} in {clean}.json); "
                    "the network must see input made like its target: re-make both coverage tracks with the same settings"
                )
    for path, found in ((noisy, side["noisy"]), (clean, side["clean"])):
        if found is None:
            log.warning("%s has no sidecar %s.json (user-supplied bigWig?): its preprocessing is unknown", path, path)
    found = side["noisy"] or side["clean"]
    if found is None:
        log.warning("no preprocessing sidecar for either track: assuming the defaults %s", DEFAULT_PREPROCESSING)
        return dict(DEFAULT_PREPROCESSING), "assumed defaults"
    return {k: found.get(k, DEFAULT_PREPROCESSING[k]) for k in PREPROCESSING_KEYS}, "sidecar"


def _blacklist(path: Path | None, sizes: dict[str, int]):
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


def _chrom_intervals(df, chrom: str) -> tuple[np.ndarray, np.ndarray]:
    sub = df[df["chrom"] == chrom]
    return sub["start"].to_numpy(), sub["end"].to_numpy()


def run(args: argparse.Namespace) -> int:
    check_writable(args.out / "meta.json")
    genome = read_chrom_sizes(args.sizes)
    sizes = select_chroms(genome, include=args.chroms)
    for bw in (args.noisy, args.clean):
        check_bigwig(bw, sizes)
    preprocessing, source = pair_preprocessing(args.noisy, args.clean)
    peaks = read_narrowpeak(args.labels, genome)  # names checked against the genome, not only the selection
    peaks = peaks[peaks["chrom"].isin(list(sizes))]
    if len(peaks) == 0:
        log.warning("%s: no peaks on %s: every label is 0", args.labels, list(sizes)[:5])
    blacklist = _blacklist(args.blacklist, genome)
    meta = {
        "sample": args.sample,
        "depth": args.depth,
        "rep": args.rep,
        "preprocessing": preprocessing,
        "preprocessing_source": source,
        "noisy": str(args.noisy),
        "clean": str(args.clean),
        "labels": str(args.labels),
        "blacklist": str(args.blacklist) if args.blacklist else None,
    }
    bw_noisy, bw_clean = open_bigwig(args.noisy), open_bigwig(args.clean)

    def chroms():
        for chrom in progress(sizes, total=len(sizes), desc="dataset", unit="chrom"):
            arrays = chrom_arrays(
                read_bigwig(args.noisy, chrom, bw=bw_noisy),
                read_bigwig(args.clean, chrom, bw=bw_clean),
                _chrom_intervals(peaks, chrom),
                _chrom_intervals(blacklist, chrom) if blacklist is not None else None,
            )
            log.info(
                "%s: %s bp, %.2f%% in peaks, %.2f%% blacklisted, noisy sum %.4g, clean sum %.4g",
                chrom,
                f"{sizes[chrom]:,}",
                100 * arrays["labels"].mean(),
                100 * (1 - arrays["mask"].mean()),
                arrays["noisy"].sum(dtype=np.float64),
                arrays["clean"].sum(dtype=np.float64),
            )
            yield chrom, arrays

    try:
        write_dataset(args.out, meta, chroms())
    finally:
        bw_noisy.close()
        bw_clean.close()
    log.info("wrote %s (%d chromosomes)", args.out, len(sizes))
    return 0
