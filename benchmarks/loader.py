#!/usr/bin/env python
"""The training loader's hand-off (issue 23): windows/s and CPU per window, this tree vs a baseline revision.

Training on a GPU reads its windows in DataLoader worker processes; each batch goes through the workers' shared
memory to the training process, is copied into pinned memory there (the pin-memory thread) and then to the card.
The baseline (default ``8075755``) handed on four float32 arrays a window (16 bytes a base); this tree hands on the
stored types (coverage uint8/uint16, one byte of flags, 4-5 bytes a base) and decodes after the copy, on the device.

Both sides read the same windows (the reference shape: 50,000 + 2 x 5,000 bases, drawn with one seed over the
demo's two pairs: the real HSC 5M library and a 60,000-fragment subsample against the 80M deep track) from the same
datasets, through their own ``WindowSet`` and ``train._loader``, each measurement a fresh process pinned to
``--threads`` cores. The training process copies every tensor of every batch once into a reused buffer (what the
pin-memory thread does; a CPU-only machine cannot pin). Figures: windows/s; CPU milliseconds per window in the
worker processes and in the training process; bytes a base handed on; and a checksum of the decoded values (the
first ``--check`` windows, decoded as training does: equal = the same values).

    .venv/bin/python benchmarks/loader.py [--baseline REV] [--windows N] [--batch 32 128] [--workers 1 2] [--runs 3]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import dataset as ds

REPO = Path(__file__).resolve().parents[1]

#: reads the windows; {datasets} {windows} {batch} {workers} {check} are filled in; prints one JSON line
CHILD = """
import json, resource, time
import numpy as np, torch
torch.set_num_threads(1)
import atacdenoise.model.dataset as D
from atacdenoise.model.train import _loader
pairs = [D.open_dataset(p) for p in {datasets!r}]
table = D.start_table(pairs, 50_000, 5_000, [])
windows = D.sample_windows(table, {windows}, 50_000, np.random.default_rng(7), flip=True)
decode = getattr(D, "decode_batch", lambda b: b)
loader = _loader(D.WindowSet(pairs, windows, 50_000, 5_000), {batch}, {workers}, torch.device("cpu"))
pinned = {{}}
r0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
n = nbytes = 0
for batch in loader:
    for k, v in batch.items():  # the pin-memory thread's copy of every tensor
        buf = pinned.get((k, v.shape, v.dtype))
        if buf is None:
            buf = pinned[(k, v.shape, v.dtype)] = torch.empty_like(v)
        buf.copy_(v)
        nbytes += v.numel() * v.element_size()
    n += len(batch["noisy"])
seconds = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, joined at the end of the epoch
main = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
total, decode_s = 0.0, 0.0
for batch in _loader(D.WindowSet(pairs, windows[:{check}], 50_000, 5_000), {batch}, 0, torch.device("cpu")):
    t = time.perf_counter()
    b = decode(batch)
    decode_s += time.perf_counter() - t
    total += float(sum(b[k].double().sum() for k in ("noisy", "clean", "labels", "mask")))
print(json.dumps({{
    "seconds": seconds, "windows": n, "main_ms": 1e3 * main / n,
    "workers_ms": 1e3 * (kids.ru_utime + kids.ru_stime) / n,
    "bytes_per_base": nbytes / n / 60_000, "checksum": total, "decode_ms": 1e3 * decode_s / {check},
}}))
"""


def main() -> int:
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--baseline", default="8075755", help="git revision handing on float32 windows")
    p.add_argument("--windows", type=int, default=1024, help="training windows read per measurement")
    p.add_argument("--batch", type=int, nargs="+", default=[32, 128], help="batch sizes")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="DataLoader worker processes")
    p.add_argument("--check", type=int, default=64, help="windows decoded for the checksum")
    args = p.parse_args()
    if args.quick:
        args.windows, args.runs, args.batch, args.workers, args.check = 32, 1, [8], [1], 8
    inputs = ds.make_inputs(args.cache / "dataset")
    rows, data = [], {"windows": args.windows, "cases": {}}
    with tempfile.TemporaryDirectory(prefix="atacdenoise-loader-bench-") as tmp:
        base_tree = Path(tmp) / "baseline"
        git = ["git", "-C", str(REPO), "worktree"]
        subprocess.run([*git, "add", "--detach", str(base_tree), args.baseline], check=True, capture_output=True)
        try:
            common.log("making the demo's datasets (this tree's commands)")
            pairs, _ = ds.make_datasets(REPO, Path(tmp) / "data", inputs, True)
            sides = {f"baseline {args.baseline}": base_tree, "this tree": REPO}
            for batch in args.batch:
                for workers in args.workers:
                    code = CHILD.format(
                        datasets=[str(x) for x in pairs],
                        windows=args.windows,
                        batch=batch,
                        workers=workers,
                        check=args.check,
                    )
                    found = {label: [] for label in sides}
                    for run in range(args.runs):  # the sides alternate
                        for label, tree in sides.items():
                            env = {"PYTHONPATH": str(tree / "workflow")}
                            s = common.run_python(code, env=env, cores=args.threads)
                            common.log(f"  batch {batch}, {workers} workers, {label} run {run + 1}: {s.inner:.2f} s")
                            found[label].append(s)
                    case = {}
                    for label, samples in found.items():
                        med = {k: statistics.median(s.extra[k] for s in samples) for k in samples[0].extra}
                        med["windows_per_s"] = args.windows / common.med(samples, "inner")
                        case[label] = med
                        rows.append(
                            [
                                label,
                                batch,
                                workers,
                                common.fmt_num(med["windows_per_s"]),
                                f"{med['workers_ms']:.3f}",
                                f"{med['main_ms']:.3f}",
                                f"{med['bytes_per_base']:.2f}",
                            ]
                        )
                    base, new = case.values()
                    rows.append(
                        [
                            "ratio (this tree / baseline)",
                            batch,
                            workers,
                            f"{new['windows_per_s'] / base['windows_per_s']:.2f}x",
                            f"{new['workers_ms'] / base['workers_ms']:.2f}x",
                            f"{new['main_ms'] / base['main_ms']:.2f}x",
                            f"{new['bytes_per_base'] / base['bytes_per_base']:.2f}x",
                        ]
                    )
                    if base["checksum"] != new["checksum"]:
                        sums = f"{base['checksum']} vs {new['checksum']}"
                        raise SystemExit(f"batch {batch}: the decoded values differ: {sums}")
                    data["cases"][f"batch {batch}, {workers} workers"] = case
        finally:
            subprocess.run([*git, "remove", "--force", str(base_tree)], check=False)
    decode = next(iter(data["cases"].values()))["this tree"]["decode_ms"]
    notes = [
        f"{args.windows} windows of 60,000 bases (reference shape) over the demo's two pairs (real HSC 5M, a "
        "60,000-fragment subsample; the deep 80M track as clean), flips included, the same windows on both sides",
        "workers ms: CPU per window of the DataLoader worker processes (read, convert, collate into shared memory); "
        "training process ms: CPU per window of the process that trains (receiving the batches and one copy of each "
        "tensor, as the pin-memory thread makes); bytes a base: what goes through both and then to the GPU",
        f"the decoded values are equal on both sides (checksum of the first {args.check} windows); this tree decodes "
        f"after the copy, on the device: on this CPU {decode:.3f} ms per window",
    ]
    common.report(
        "The training loader's hand-off: float32 windows vs stored types",
        ["side", "batch", "workers", "windows/s", "workers ms/window", "training process ms/window", "bytes a base"],
        rows,
        notes,
        args,
        data,
        settings=[f"every reading process pinned to {args.threads} core(s); torch 1 thread"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
