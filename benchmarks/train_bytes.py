#!/usr/bin/env python
"""The bytes of one training step outside the Triton kernels, counted op by op (issue 23; no GPU needed).

The H100 run's training step took ~2.1 ms a window where the README's hand count of the kernels and the
elementwise passes explained ~1 ms. This script replaces the hand count of the second part by a count: it runs one
training step of the Triton route (``conv_impl = "triton"``, bf16 autocast, the three losses, Adam) on the CPU under
a ``TorchDispatchMode`` that adds up, for every PyTorch operator that is not a view or an allocation, the bytes of
its tensor inputs (each once) and outputs. The Triton kernels' launches are skipped (their outputs stay unwritten:
a byte count does not depend on the values) and their tensor arguments are counted apart, as the least traffic
of the kernels. The weight-gradient programs are sized for ``--sms`` streaming multiprocessors, as on that card.

Figures: GB a step per operator and shape, and the time that traffic takes at ``--bandwidth`` TB/s (a lower
bound: an elementwise pass on a GPU runs at most at the memory's rate). Both weight-gradient forms are counted.

    .venv/bin/python benchmarks/train_bytes.py [--batch 128] [--sms 132] [--bandwidth 3.35] [--forms taps block]
"""

from __future__ import annotations

import collections
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
import common
from gpu_profile import train_inputs, train_step

#: operators that allocate without moving bytes
ALLOCATIONS = {"aten::empty", "aten::empty_like", "aten::empty_strided", "aten::new_empty", "aten::new_empty_strided"}
KERNELS = ("_conv_kernel", "_wgrad_kernel", "_block_kernel", "_block_wgrad_kernel")


def _describe(tensors: list) -> str:
    return " ".join(f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}" for t in tensors)


def count_step(form: str, batch: int, interval: int, pad: int, sms: int, preset: str) -> dict:
    """Run one training step of the Triton route with the kernels skipped; return its bytes by operator."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from atacdenoise.model import gpuconv
    from atacdenoise.model.network import build_model

    os.environ["ATACDENOISE_TRITON_CONFIG"] = json.dumps({"wgrad": form})
    gpuconv._train_config.cache_clear()
    state = {"stepping": False}

    def phase() -> str:  # autograd's engine runs the backward pass's operators under a node of its graph
        if state["stepping"]:
            return "optimizer"
        return "backward" if torch._C._current_autograd_node() is not None else "forward"

    ops: dict = collections.defaultdict(lambda: {"bytes": 0, "calls": 0})
    kernels: dict = collections.defaultdict(lambda: {"bytes": 0, "calls": 0})

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func._schema.name
            view = any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)
            if view or name in ALLOCATIONS:
                return out
            ins, seen = [], set()
            for t in tree_flatten((args, kwargs))[0]:
                key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)) if torch.is_tensor(t) else 0
                if torch.is_tensor(t) and key not in seen:
                    seen.add(key)
                    ins.append(t)
            outs = [t for t in tree_flatten(out)[0] if torch.is_tensor(t)]
            row = ops[(phase(), name.removeprefix("aten::"), f"{_describe(ins[:3])} -> {_describe(outs[:1])}")]
            row["bytes"] += sum(t.numel() * t.element_size() for t in ins + outs)
            row["calls"] += 1
            return out

    class Skipped:  # a kernel's launch, counted and not run
        def __init__(self, name: str) -> None:
            self.name = name

        def __getitem__(self, grid):
            def launch(*args, **kwargs) -> None:
                row = kernels[(phase(), self.name)]
                row["bytes"] += sum(a.numel() * a.element_size() for a in args if torch.is_tensor(a))
                row["calls"] += 1

            return launch

    saved = {n: getattr(gpuconv, n) for n in (*KERNELS, "_sm_count")}
    try:
        for n in KERNELS:
            setattr(gpuconv, n, Skipped(n))
        gpuconv._sm_count = lambda device: sms
        torch.manual_seed(0)
        model = build_model({"preset": preset}).train()
        model.conv_impl = "triton"
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        opt.register_step_pre_hook(lambda *_: state.update(stepping=True))
        windows, s = train_inputs(batch, interval, pad, torch.device("cpu"))
        with Count():  # the step gpu_profile.py times on a card
            train_step(model, opt, windows, s, torch.bfloat16)
    finally:
        for n, f in saved.items():
            setattr(gpuconv, n, f)
        os.environ.pop("ATACDENOISE_TRITON_CONFIG", None)
        gpuconv._train_config.cache_clear()
    convs = sum(len(b.convs) for b in [*model.reg_blocks, *model.cls_blocks])
    activation = (
        batch * (interval + 2 * pad) * gpuconv.padded(model.hparams["filters"]) * 2
    )  # one bf16 activation, all channels
    return {"ops": dict(ops), "kernels": dict(kernels), "convs": convs, "activation_bytes": activation}


def main() -> int:
    p = common.base_parser(__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=128, help="windows a step (stage D's batch for the target)")
    p.add_argument("--sms", type=int, default=132, help="the card's streaming multiprocessors (H100 SXM: 132)")
    p.add_argument("--bandwidth", type=float, default=3.35, help="the card's memory bandwidth, TB/s (H100 SXM)")
    p.add_argument("--forms", nargs="+", default=["taps", "block"], choices=["taps", "block"])
    p.add_argument("--preset", default="atacworks")
    p.add_argument("--rows", type=int, default=14, help="operators listed (the costliest)")
    args = p.parse_args()
    args.runs = 1  # a count, not a timing
    interval, pad = (4_000, 400) if args.quick else (50_000, 5_000)
    if args.quick:
        args.batch = 2
    counts = {form: count_step(form, args.batch, interval, pad, args.sms, args.preset) for form in args.forms}
    act = next(iter(counts.values()))["activation_bytes"]
    keys = sorted(
        {k for c in counts.values() for k in c["ops"]},
        key=lambda k: -max(c["ops"].get(k, {"bytes": 0})["bytes"] for c in counts.values()),
    )
    headers = [
        "operator (phase, inputs -> output)",
        "calls",
        *[f"GB a step ({f})" for f in args.forms],
        "in activations",
        f"ms at {args.bandwidth} TB/s",
    ]

    def row(label: str, calls: int, by_form: list[int]) -> list:
        worst = max(by_form)
        return [
            label,
            calls,
            *[round(b / 1e9, 2) for b in by_form],
            round(worst / act, 1),
            round(worst / args.bandwidth / 1e9, 2),
        ]

    rows = []
    for k in keys[: args.rows]:
        phase, op, sig = k
        by_form = [c["ops"].get(k, {"bytes": 0})["bytes"] for c in counts.values()]
        calls = max(c["ops"].get(k, {"calls": 0})["calls"] for c in counts.values())
        rows.append(row(f"{phase} `{op}` {sig}", calls, by_form))
    rest = [sum(v["bytes"] for kk, v in c["ops"].items() if kk not in keys[: args.rows]) for c in counts.values()]
    rows.append(row("every other operator", 0, rest))
    total = [sum(v["bytes"] for v in c["ops"].values()) for c in counts.values()]
    rows.append(
        row(
            "**all operators outside the kernels**",
            sum(v["calls"] for v in next(iter(counts.values()))["ops"].values()),
            total,
        )
    )
    for name in KERNELS:
        by_form = [sum(v["bytes"] for (ph, n), v in c["kernels"].items() if n == name) for c in counts.values()]
        if any(by_form):
            calls = max(sum(v["calls"] for (ph, n), v in c["kernels"].items() if n == name) for c in counts.values())
            rows.append(row(f"kernel `{name}`: its tensors once each", calls, by_form))
    least = [t + sum(v["bytes"] for v in c["kernels"].values()) for t, c in zip(total, counts.values())]
    rows.append(row("**a step's least memory traffic** (operators and kernels)", 0, least))
    convs = next(iter(counts.values()))["convs"]
    notes = [
        f"One training step of preset {args.preset!r} ({convs} convolutions), Triton route, bf16 autocast, batch "
        f"{args.batch} windows of {interval:,} + 2 x {pad:,} bases; one activation (16 channels, bf16) = "
        f"{act / 1e9:.3f} GB a step; weight-gradient programs sized for {args.sms} SMs.",
        "Counted on the CPU: every PyTorch operator that is not a view or an allocation, its tensor inputs once each "
        "plus its outputs; the Triton kernels' launches skipped (a count does not depend on the values) and their "
        "tensor arguments listed apart: the least traffic of the kernels (a kernel re-reads its tiles from L2).",
        "'in activations': the worse form's bytes in units of that activation (an elementwise pass that reads one "
        f"activation and writes one is 2); 'ms at {args.bandwidth} TB/s': the same bytes at the memory's full "
        "rate, a lower bound for the operator on the card.",
    ]
    data = {
        "batch": args.batch,
        "sms": args.sms,
        "bandwidth_tbs": args.bandwidth,
        "activation_bytes": act,
        "totals_bytes": dict(zip(args.forms, total)),
        "least_traffic_bytes": dict(zip(args.forms, least)),
        "counts": {
            f: {
                "ops": [{"phase": k[0], "op": k[1], "shapes": k[2], **v} for k, v in c["ops"].items()],
                "kernels": [{"phase": k[0], "kernel": k[1], **v} for k, v in c["kernels"].items()],
                "convs": c["convs"],
            }
            for f, c in counts.items()
        },
    }
    common.report(
        "Training step: bytes outside the Triton kernels (counted, not timed)", headers, rows, notes, args, data
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
