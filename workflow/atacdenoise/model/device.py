"""Where the model runs: the torch device and the autocast precision, one rule for training and inference."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import torch

from atacdenoise.errors import InputError

log = logging.getLogger(__name__)

#: accepted values of ``--amp`` / ``model.training.amp``
AMP_CHOICES = ("auto", "bf16", "fp16", "off")


def select_device(requested: str = "auto") -> torch.device:
    """Pick the device: ``auto`` is CUDA when one is visible, else the CPU (logged).

    ``cpu``, ``cuda`` and ``cuda:N`` are taken as asked; asking for CUDA without
    a visible GPU is an :class:`InputError` that says what to check.
    """
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        log.info("no CUDA device: running on CPU")
        return torch.device("cpu")
    if requested != "cpu" and not (requested == "cuda" or requested.startswith("cuda:")):
        raise InputError(f"--device {requested!r}: expected auto, cpu or cuda (or cuda:N)")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(
            f"--device {requested}: no CUDA device is visible (check CUDA_VISIBLE_DEVICES and the driver), "
            "or use --device auto / cpu"
        )
    return torch.device(requested)


def autocast_dtype(requested: str, device: torch.device, training: bool = False) -> torch.dtype | None:
    """Autocast precision for ``requested`` on ``device``: a dtype, or None for full float32.

    On a GPU, ``auto`` is bf16 where supported; on an older GPU it is fp16 for
    training (which scales its loss) and float32 for inference (fp16
    activations could overflow); ``bf16`` and ``fp16`` are taken as asked. On a
    CPU, training always runs in float32 (a warning when something else was
    asked), while inference honours ``bf16`` (CPU autocast supports it).
    """
    if requested not in AMP_CHOICES:
        raise InputError(f"--amp {requested!r}: expected one of {', '.join(AMP_CHOICES)}")
    if requested == "off":
        return None
    if device.type != "cuda":
        if requested == "bf16" and not training:
            return torch.bfloat16
        if requested != "auto":
            log.warning("amp=%s needs a CUDA GPU; running in float32 on %s", requested, device)
        return None
    if requested == "auto":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if training else None
    return torch.bfloat16 if requested == "bf16" else torch.float16


def gpu_conv_setting() -> str:
    """Return ``ATACDENOISE_GPU_CONV`` checked: ``auto`` (unset), ``torch`` or ``triton``."""
    value = os.environ.get("ATACDENOISE_GPU_CONV", "auto").strip().lower()
    if value not in ("auto", "torch", "triton"):
        raise InputError(f"ATACDENOISE_GPU_CONV={value!r}: expected auto, torch or triton")
    return value


def gpu_conv_requested(device: torch.device | None = None) -> bool:
    """Tell whether the convolutions of GPU inference and training on ``device`` run on the Triton kernel.

    ``ATACDENOISE_GPU_CONV``: ``auto`` (the default) picks Triton (:mod:`atacdenoise.model.gpuconv`) where it
    runs: Triton is installed and the card has bf16 tensor cores (compute capability >= 8.0: A100, H100,
    H200...); it ran the reference shape 5.5x faster than cuDNN on an H100 (``benchmarks/README.md``, issue 23).
    ``torch`` keeps PyTorch's (cuDNN's) convolutions; ``triton`` asks for the kernel whatever the card.
    """
    value = gpu_conv_setting()
    if value != "auto":
        return value == "triton"
    if device is None or device.type != "cuda":
        return False
    from atacdenoise.model import gpuconv

    return gpuconv.available() and torch.cuda.get_device_capability(device) >= (8, 0)


def gpu_kernels_work(probe: Callable[[], object], what: str) -> bool:
    """Run ``probe`` (the Triton kernels compiled and run once, on a tiny input); tell whether they work here.

    Chosen by default (``auto``), a failure (a Triton install that cannot compile for this card or without a
    host C compiler, say) is logged as a warning and PyTorch's convolutions run instead; asked for by name
    (``ATACDENOISE_GPU_CONV=triton``), the error is raised.
    """
    try:
        probe()
        return True
    except Exception as exc:
        if gpu_conv_setting() == "triton":
            raise
        log.warning(
            "%s: the Triton kernels failed on this GPU (%s: %s); PyTorch's convolutions instead "
            "(ATACDENOISE_GPU_CONV=torch skips the attempt)",
            what,
            type(exc).__name__,
            str(exc)[:300],
        )
        return False
