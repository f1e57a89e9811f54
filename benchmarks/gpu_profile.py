"""Where a GPU's time goes: the kernels of one inference batch and of one training step, per convolution route.

``gpu.py`` measures whole commands; this script says why they take what they take, so the next lever is chosen
from figures: it times training steps on windows already on the card (no loader, no copies: the card's own
rate, to set against ``gpu.py``'s epoch with its loader) and lists each case's costliest kernels
(``torch.profiler``). Run on the GPU machine after ``gpu_session.sh``'s wheels are in place::

    python benchmarks/gpu_profile.py --out $OUT [--config '{"kernel": "block", "S": 8, ...}']

Writes ``gpu-profile.md`` and ``gpu-profile.json`` to ``--out``. ``--device cpu --quick`` is a smoke test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

log = logging.getLogger("gpu_profile")


def sync(device) -> None:
    """Wait for the card (no-op on a CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step(model, opt, batch: dict, s: dict, dtype) -> None:
    """One optimiser step as ``train()`` takes it: autocast forward, the three losses, backward, fused Adam."""
    import torch

    from atacdenoise.model.train import loss_terms

    with torch.autocast(batch["noisy"].device.type, dtype=dtype, enabled=dtype is not None):
        track, logits = model(batch["noisy"])
    sl = slice(s["pad"], s["pad"] + s["interval"])
    out = loss_terms(track[:, sl].float(), logits[:, sl].float(), batch["clean"], batch["labels"], batch["mask"], s)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    opt.step()


def train_inputs(batch: int, interval: int, pad: int, device) -> tuple[dict, dict]:
    """Return a training batch of random windows on ``device`` and the loss settings :func:`train_step` takes."""
    import torch

    width = interval + 2 * pad
    windows = {
        "noisy": (torch.rand(batch, width, device=device) * 8).floor(),
        "clean": torch.rand(batch, interval, device=device) * 8,
        "labels": (torch.rand(batch, interval, device=device) > 0.9).float(),
        "mask": torch.ones(batch, interval, device=device),
    }
    s = {"pad": pad, "interval": interval, "w_mse": 1.0, "w_pearson": 1.0, "w_bce": 1.0, "pearson": "window"}
    return windows, s


def kernel_table(prof, rows: int) -> list[dict]:
    """Return the costliest device kernels of a profile: name, calls, total ms, share of the device time."""
    events = [e for e in prof.key_averages() if getattr(e, "self_device_time_total", 0) > 0]
    total = sum(e.self_device_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_device_time_total, reverse=True)
    return [
        {
            "kernel": e.key[:90],
            "calls": e.count,
            "ms": e.self_device_time_total / 1e3,
            "share": e.self_device_time_total / total,
        }
        for e in events[:rows]
    ]


def profile(fn, device, reps: int) -> tuple[float, list[dict]]:
    """Seconds per call of ``fn`` (after warm-up, synchronised) and, on a GPU, its kernels over ``reps`` calls."""
    import torch
    from torch.profiler import ProfilerActivity

    for _ in range(2):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    per_call = (time.perf_counter() - t0) / reps
    kernels: list[dict] = []
    if device.type == "cuda":
        with torch.profiler.profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(2):
                fn()
            sync(device)
        kernels = kernel_table(prof, 12)
    return per_call, kernels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--preset", default="atacworks")
    p.add_argument("--config", default=None, help="Triton kernel configuration (JSON; default: the kernel's own)")
    p.add_argument("--infer-batch", type=int, default=128)
    p.add_argument("--train-batch", type=int, default=128, help="windows a step (stage D's batch for the target)")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a CPU smoke test")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.config:
        os.environ["ATACDENOISE_TRITON_CONFIG"] = args.config
    import torch

    from atacdenoise.model import gpuconv
    from atacdenoise.model.network import build_model

    device = torch.device(args.device)
    interval, pad = (2_000, 200) if args.quick else (50_000, 5_000)
    width = interval + 2 * pad
    if args.quick:
        args.infer_batch, args.train_batch, args.reps = 2, 2, 1
    cuda = device.type == "cuda"
    bf16 = torch.bfloat16 if cuda else None
    routes = ["torch", "triton"] if cuda and gpuconv.available() else ["torch"]
    torch.manual_seed(0)
    results: dict = {"device": torch.cuda.get_device_name(device) if cuda else "cpu", "cases": []}
    results["torch"] = torch.__version__
    results["config"] = json.loads(args.config) if args.config else None
    x = (torch.rand(args.infer_batch, width, device=device) * 8).floor()
    for route in routes:
        model = build_model({"preset": args.preset}).to(device).eval()
        if route == "triton":
            net = gpuconv.TritonDenoiser(model, torch.bfloat16, results["config"])

            def infer(net=net):
                with torch.inference_mode():
                    net(x)
        else:

            def infer(model=model):
                with torch.inference_mode(), torch.autocast(device.type, dtype=bf16 or torch.bfloat16, enabled=cuda):
                    model(x)

        s, kernels = profile(infer, device, args.reps)
        results["cases"].append(
            {
                "case": f"inference, {route} convs",
                "batch": args.infer_batch,
                "s": s,
                "windows_per_s": args.infer_batch / s,
                "kernels": kernels,
            }
        )
        log.info("inference %s: %.1f ms per batch of %d", route, s * 1e3, args.infer_batch)
    b = args.train_batch
    batch, s = train_inputs(b, interval, pad, device)
    # the Triton route's weight gradient both ways (training's "auto" times the same two at its start and takes the
    # faster): per tap and through the block form's matrices
    cases = [("torch", None)] + ([("triton", "taps"), ("triton", "block")] if "triton" in routes else [])
    base = dict(results["config"] or {})
    for route, wgrad in cases:
        if wgrad is not None:
            os.environ["ATACDENOISE_TRITON_CONFIG"] = json.dumps({**base, "wgrad": wgrad})
            gpuconv._train_config.cache_clear()
        torch.manual_seed(0)
        model = build_model({"preset": args.preset}).to(device).train()
        model.conv_impl = route
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=cuda)
        sec, kernels = profile(lambda model=model, opt=opt: train_step(model, opt, batch, s, bf16), device, args.reps)
        name = f"training step, {route} convs" + (f", {wgrad} weight gradient" if wgrad else "")
        results["cases"].append({"case": name, "batch": b, "s": sec, "windows_per_s": b / sec, "kernels": kernels})
        log.info("%s: %.1f ms per step of %d windows (%.0f windows/s)", name, sec * 1e3, b, b / sec)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-profile.json").write_text(json.dumps(results, indent=2))
    lines = [f"# Kernel profile ({results['device']}, torch {results['torch']}, Triton config {results['config']})", ""]
    for case in results["cases"]:
        lines += [
            f"## {case['case']}: batch {case['batch']}, {case['s'] * 1e3:.1f} ms, "
            f"{case['windows_per_s']:.0f} windows/s (windows already on the device)",
            "",
            "| kernel | calls | ms | share |",
            "|---|---|---|---|",
            *(f"| `{k['kernel']}` | {k['calls']} | {k['ms']:.2f} | {k['share']:.1%} |" for k in case["kernels"]),
            "",
        ]
    (args.out / "gpu-profile.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
