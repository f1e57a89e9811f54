"""Stage A of ``gpu.py``: the model alone, each lever of issue 23 against PyTorch's bf16 autocast (today's default).

Every variant runs the same reference-shape network on the same random windows (``batch`` x interval + 2 pad
positions) and is timed after warm-up, on the GPU clock (synchronised). Each row carries the gain predicted
before the run, so the table says whether the reasoning held:

=========================  =====================================================================================
variant                    predicted (vs ``torch bf16``), and why
=========================  =====================================================================================
torch fp32                 0.6x: TF32 convs (GPU.md: 36.6 vs 61.6 M bp/s)
torch bf16                 1x: the baseline, what ``--amp auto`` runs today (~32 TFLOP/s on an H200)
channels padded to 16      1.0-1.03x: zero-weight channels make the tensors 16-aligned; cuDNN's kernels for 15 and
                           16 channels measured within 2 % (GPU.md)
torch.compile              1.1x: fuses ReLU, residual add and bias into the convs' epilogues (GPU.md: 67 M bp/s)
CUDA graph                 1.0-1.05x: ~110 launches per batch of 64 x 60 kb are not what costs
triton, "taps"             3-6x: an implicit GEMM per conv on the tensor cores, one 16-channel tile per tap, the
                           bias, skip and ReLU in the store; bounded by loading each tap's shifted input tile (4 KB
                           per 128 positions for 16 MMAs) from L1/shared memory: ~25-45 % of the dense bf16 rate
triton, "block"            5-10x: rows of S = 4 same-phase positions x 16 channels, one 64 x 64 product per offset
                           (15 offsets instead of 51 taps): 3.6x less data per product, N = 64 instead of 16, for
                           1.2x the products; compute-bound on paper (~45 % of the dense rate counted in the
                           model's own FLOPs)
triton + CUDA graph        the triton row + 0-5 %
=========================  =====================================================================================

Outputs are checked on the same card before timing: the Triton kernel in float32 (IEEE products) against the
float32 model (TF32 off), and in bf16 against PyTorch's own bf16 autocast, both from the float32 model.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

PREDICTIONS = {
    "torch fp32": "0.6x (TF32 convs)",
    "torch bf16": "1x (baseline)",
    "padded 16": "1.0-1.03x",
    "torch.compile": "1.1x",
    "CUDA graph": "1.0-1.05x",
    "triton": "taps 3-6x, block 5-10x (≥ 150 TFLOP/s is the target)",
    "triton + CUDA graph": "triton + 0-5 %",
}

#: the Triton kernels' sweep (model/gpuconv.py, DEFAULT_CONFIG's keys), 3 pipeline stages, then 2 and 4 for the best.
#: "taps": positions per program, warps, and where each tap's input tile is cached (".ca": L1, where the next taps
#: find it again; "": Triton's choice, L2 only). "block": the block-Toeplitz form, S positions a row (N = 16 S),
#: BLOCK_Q x dilation rows a program.
TRITON_SWEEP = [
    {"kernel": "taps", "BLOCK_L": 128, "num_warps": 4, "cache": ".ca"},
    {"kernel": "taps", "BLOCK_L": 256, "num_warps": 8, "cache": ".ca"},
    {"kernel": "taps", "BLOCK_L": 128, "num_warps": 4, "cache": ""},
    {"kernel": "block", "S": 4, "BLOCK_Q": 8, "num_warps": 4, "cache": ".ca"},
    {"kernel": "block", "S": 4, "BLOCK_Q": 16, "num_warps": 4, "cache": ".ca"},
    {"kernel": "block", "S": 4, "BLOCK_Q": 16, "num_warps": 8, "cache": ".ca"},
    {"kernel": "block", "S": 2, "BLOCK_Q": 16, "num_warps": 4, "cache": ".ca"},
    {"kernel": "block", "S": 8, "BLOCK_Q": 8, "num_warps": 8, "cache": ".ca"},
]


def pad_filters(model, multiple: int = 16):
    """Return the same network with ``filters`` padded to a multiple of ``multiple`` by zero weights (same outputs)."""
    import torch

    from atacdenoise.model.network import DenoiseResNet

    h = dict(model.hparams)
    f = h["filters"]
    h["filters"] = -(-f // multiple) * multiple
    wide = DenoiseResNet(**h).to(next(model.parameters()).device).eval()
    with torch.no_grad():
        for p in wide.parameters():
            p.zero_()
        own = dict(model.named_parameters())
        for name, p in wide.named_parameters():
            src = own[name]
            p[tuple(slice(0, n) for n in src.shape)] = src
    wide.peak_temperature = getattr(model, "peak_temperature", 1.0)
    return wide


def cuda_graph(fn: Callable, x):
    """``fn`` captured as one CUDA graph on the static input ``x``; returns a callable replaying it."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(x)

    def replay(_x=None):
        graph.replay()
        return out

    return replay


def _time(fn: Callable, x, device, reps_min: int = 5, seconds: float = 1.0) -> float:
    """Seconds per call of ``fn(x)`` after two warm-up calls (synchronised on a GPU)."""
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        fn(x)
    sync()
    n, t0 = 0, time.perf_counter()
    while n < reps_min or time.perf_counter() - t0 < seconds:
        fn(x)
        n += 1
        if n >= 200:
            break
    sync()
    return (time.perf_counter() - t0) / n


def check_outputs(model, device, width: int) -> dict:
    """Largest differences of the Triton kernel from the float32 model, next to PyTorch's bf16 autocast's."""
    import torch

    from atacdenoise.model.gpuconv import TritonDenoiser

    x = (torch.rand(2, width, device=device) * 8).floor()
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.inference_mode():
            track, logits = model(x)
            t32, l32 = TritonDenoiser(model, torch.float32)(x)
            t16, l16 = TritonDenoiser(model, torch.bfloat16)(x)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                ta, la = model(x)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    prob = torch.sigmoid(logits)
    scale = float(track.abs().max()) or 1.0
    return {
        "triton_fp32_track_rel": float((t32 - track).abs().max()) / scale,
        "triton_fp32_prob": float((torch.sigmoid(l32) - prob).abs().max()),
        "triton_bf16_track_rel": float((t16.float() - track).abs().max()) / scale,
        "triton_bf16_prob": float((torch.sigmoid(l16.float()) - prob).abs().max()),
        "autocast_bf16_track_rel": float((ta.float() - track).abs().max()) / scale,
        "autocast_bf16_prob": float((torch.sigmoid(la.float()) - prob).abs().max()),
    }


def stage_levers(args, device, flops_base: int, interval: int, pad: int, log: Callable[[str], None], over) -> dict:
    """Time every variant at one batch (on a GPU the first of ``args.batch_sizes`` >= 64), then the best at each batch.

    ``over()`` tells when the stage's share of the budget is spent (the rest is skipped, and said). Returns
    ``{"rows", "best", "checks", "notes"}``; ``best["model"]`` names the variant stages B and C should use.
    """
    import torch

    from atacdenoise.model import gpuconv
    from atacdenoise.model.network import build_model

    torch.manual_seed(0)
    model = build_model({"preset": args.preset}).to(device).eval()
    width = interval + 2 * pad
    cuda = device.type == "cuda"
    triton_ok = gpuconv.available() and cuda
    notes = []
    checks = {}
    if triton_ok:
        try:
            checks = check_outputs(model, device, min(width, 20_011))
            log("  levers: output checks " + ", ".join(f"{k} {v:.2e}" for k, v in checks.items()))
        except Exception as exc:  # a Triton compile or launch failure (TritonError is no RuntimeError)
            log(f"  levers: Triton output check failed: {type(exc).__name__}: {str(exc)[:300]}")
            notes.append(f"Triton rows skipped: the output check failed ({type(exc).__name__}: {str(exc)[:120]})")
            triton_ok = False
    else:
        notes.append("Triton rows skipped: " + ("Triton is not installed" if cuda else "no GPU"))
    # a GPU's batch: the first >= 64 (else the largest); a CPU smoke run: the smallest
    batch = next((b for b in args.batch_sizes if b >= 64), max(args.batch_sizes)) if cuda else min(args.batch_sizes)
    x = (torch.rand(batch, width, device=device) * 8).floor()
    bf16 = torch.bfloat16

    def autocast(net, dtype=bf16):
        def run(inp):
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or bf16, enabled=dtype is not None):
                return net(inp)

        return run

    variants: list[tuple[str, dict, Callable[[], Callable]]] = [
        ("torch fp32", {}, lambda: autocast(model, None)),
        ("torch bf16", {}, lambda: autocast(model)),
        ("padded 16", {}, lambda: autocast(pad_filters(model))),
    ]
    if cuda:  # on a CPU, inference runs the native kernels (model/cpuconv.py) instead
        variants.append(("torch.compile", {}, lambda: autocast(torch.compile(copy.deepcopy(model)))))
        variants.append(("CUDA graph", {}, lambda: cuda_graph(autocast(model), x)))
    else:
        notes.append("torch.compile and CUDA graph rows: GPU only")
    if triton_ok:
        for sweep in TRITON_SWEEP:
            cfg = {**sweep, "num_stages": 3}
            variants.append(("triton", cfg, lambda cfg=cfg: _triton(model, cfg)))
    rows: list[dict] = []

    def measure(name: str, cfg: dict, make: Callable[[], Callable], b: int, inp) -> dict | None:
        if over():
            notes.append(f"{name} {cfg or ''} batch {b}: not run (stage A's budget spent)")
            return None
        t0 = time.perf_counter()
        try:
            fn = make()
            s = _time(fn, inp, device, reps_min=5 if cuda else 1, seconds=1.0 if cuda else 0.0)
        except Exception as exc:  # out of memory, a torch.compile or Triton compile failure
            log(f"  levers {name} {cfg} batch {b}: {type(exc).__name__}: {str(exc)[:300]}")
            notes.append(f"{name} {cfg or ''} batch {b}: failed ({type(exc).__name__}: {str(exc)[:120]})")
            return None
        rec = {
            "model": name,
            "config": cfg,
            "batch": b,
            "amp": "fp32" if name == "torch fp32" else "bf16",
            "ms_per_batch": s * 1e3,
            "out_bp_per_s": b * interval / s,
            "tflops": b * width * flops_base / s / 1e12,
            "prediction": PREDICTIONS.get(name, ""),
            "setup_s": time.perf_counter() - t0 - s,
        }
        rows.append(rec)
        log(
            f"  levers: {name:20s} {cfg or ''!s:45s} batch {b:4d}: {rec['out_bp_per_s'] / 1e6:8.2f} M output bp/s, "
            f"{rec['tflops']:6.1f} TFLOP/s"
        )
        return rec

    for name, cfg, make in variants:
        measure(name, cfg, make, batch, x)
    tri = [r for r in rows if r["model"] == "triton"]
    if tri:
        top = max(tri, key=lambda r: r["out_bp_per_s"])
        for stages in (2, 4):
            cfg = {**top["config"], "num_stages": stages}
            measure("triton", cfg, lambda cfg=cfg: _triton(model, cfg), batch, x)
        top = max((r for r in rows if r["model"] == "triton"), key=lambda r: r["out_bp_per_s"])
        measure("triton + CUDA graph", top["config"], lambda: cuda_graph(_triton(model, top["config"]), x), batch, x)
    baseline = next((r for r in rows if r["model"] == "torch bf16"), None)
    for r in rows:
        r["vs_torch_bf16"] = r["out_bp_per_s"] / baseline["out_bp_per_s"] if baseline else None
    usable = [r for r in rows if r["model"] in ("torch bf16", "torch fp32", "triton")]  # what infer can run
    best = max(usable, key=lambda r: r["out_bp_per_s"]) if usable else None
    if best is not None:  # the best usable variant at the other batch sizes
        top = dict(best)
        if top["model"] == "triton":
            make = lambda: _triton(model, top["config"])  # noqa: E731
        else:
            make = lambda: autocast(model, bf16 if top["amp"] == "bf16" else None)  # noqa: E731
        for b in args.batch_sizes:
            if b == batch:
                continue
            xb = (torch.rand(b, width, device=device) * 8).floor()
            rec = measure(top["model"], top["config"], make, b, xb)
            if rec is not None and baseline:
                rec["vs_torch_bf16"] = rec["out_bp_per_s"] / baseline["out_bp_per_s"]
            if rec is not None and rec["out_bp_per_s"] > best["out_bp_per_s"]:
                best = rec
    return {"rows": rows, "best": best, "checks": checks, "notes": notes, "batch": batch}


def triton_available() -> bool:
    """Tell whether the Triton kernel can be imported here (a CUDA build of torch ships Triton)."""
    from atacdenoise.model import gpuconv

    return gpuconv.available()


def _triton(model, cfg: dict) -> Callable:
    """Return the Triton route (bf16) with kernel configuration ``cfg``."""
    import torch

    from atacdenoise.model.gpuconv import TritonDenoiser

    net = TritonDenoiser(model, torch.bfloat16, cfg)

    def run(inp):
        with torch.inference_mode():
            return net(inp)

    return run


def lever_table(lev: dict) -> list[str]:
    """Markdown rows of stage A: variant, config, batch, ms, M bp/s, TFLOP/s, x torch bf16, predicted."""
    lines = [
        "| variant | kernel config | batch | ms / batch | M output bp/s | TFLOP/s | x torch bf16 | predicted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in lev.get("rows", []):
        cfg = " ".join(f"{k}={v}" for k, v in (r.get("config") or {}).items())
        vs = f"{r['vs_torch_bf16']:.2f}" if r.get("vs_torch_bf16") else "-"
        lines.append(
            f"| {r['model']} | {cfg} | {r['batch']} | {r['ms_per_batch']:.1f} | {r['out_bp_per_s'] / 1e6:.1f} "
            f"| {r['tflops']:.1f} | {vs} | {r.get('prediction', '')} |"
        )
    return lines
