"""The denoising 1-D ResNet, its presets, and the model file (``model.pt``) format.

Shape (clean-room, from the published description of the reference method):

* regression branch: ``reg_blocks`` residual blocks on the (transformed) noisy
  coverage, then a 1x1 conv to one channel and a ReLU -> the denoised track (>= 0);
* classification branch: ``cls_blocks`` residual blocks on the regression output
  (optionally concatenated with the regression features, ``cls_sees_features``),
  then a 1x1 conv -> per-base peak logits.

A residual block is ``conv-ReLU-conv-ReLU-conv`` (``convs_per_block`` convs of
``filters`` channels, ``kernel_size`` taps spaced ``dilation`` bases apart,
'same' padding) plus a skip connection, then a ReLU. The first block of each
branch maps its input channels to ``filters`` with its first conv, and its skip
goes through a 1x1 projection conv. Every conv is odd-sized and 'same'-padded, so
the output has the length of the input; each dilated conv widens the receptive
field by ``(kernel_size - 1) * dilation`` bases.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from atacdenoise import __version__
from atacdenoise.atomic import atomic_output
from atacdenoise.errors import InputError
from atacdenoise.model.calibration import temperature_of

log = logging.getLogger(__name__)

FORMAT = "atacdenoise-model/1"

#: named shapes; ``build_model({"preset": name, **overrides})``
_REFERENCE_SHAPE = dict(filters=15, kernel_size=51, dilation=8, reg_blocks=5, cls_blocks=2, convs_per_block=3)
PRESETS: dict[str, dict[str, Any]] = {
    # the reference shape: 5 regression + 2 classification blocks, 3 convs of 15 filters, kernel 51, dilation 8,
    # trained with this project's recipe (train.TRAIN_DEFAULTS)
    "standard": dict(_REFERENCE_SHAPE),
    # the same shape with the reference training recipe (PRESET_TRAINING), kept for comparison
    "atacworks": dict(_REFERENCE_SHAPE),
    # ~25x fewer multiply-adds per base: trains the 10-Mb demo in minutes on 2 CPU cores
    # (9,866 parameters; receptive field 1,921 bp for the track, 2,881 bp for peaks)
    "light": dict(filters=8, kernel_size=21, dilation=16, reg_blocks=2, cls_blocks=1, convs_per_block=3),
}
DEFAULT_PRESET = "standard"
#: training settings a preset brings (below the user's own keys, above train.TRAIN_DEFAULTS)
PRESET_TRAINING: dict[str, dict[str, Any]] = {
    # the reference recipe (DESIGN 4): coverage as stored, peak head from p = 0.5, one Pearson r per batch,
    # peaks at probability 0.5 of the uncalibrated head, Adam 2e-4, batch 64, 25 epochs
    "atacworks": {
        "input_transform": {"kind": "none"},
        "prior_init": False,
        "pearson": "batch",
        "threshold": 0.5,
        "calibrate": False,
        "blend": False,
        "lr": 2e-4,
        "batch_size": 64,
        "epochs": 25,
    },
}

#: input transforms applied to the noisy coverage before the network sees it
INPUT_TRANSFORMS = ("none", "log1p", "depth")


class ResBlock(nn.Module):
    """``convs`` dilated convs with ReLUs between them, plus a (projected) skip, then ReLU.

    x: float[B, in_channels, L] -> float[B, filters, L]
    """

    def __init__(self, in_channels: int, filters: int, kernel_size: int, dilation: int, convs: int):
        super().__init__()
        pad = (kernel_size - 1) // 2 * dilation
        self.convs = nn.ModuleList(
            nn.Conv1d(in_channels if i == 0 else filters, filters, kernel_size, dilation=dilation, padding=pad)
            for i in range(convs)
        )
        self.skip = nn.Conv1d(in_channels, filters, 1) if in_channels != filters else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the convs to x: float[B, in_channels, L], add the skip and return ReLU of the sum."""
        y = x
        for i, conv in enumerate(self.convs):
            y = conv(y)
            if i < len(self.convs) - 1:
                y = torch.relu(y)
        return torch.relu(y + self.skip(x))


class DenoiseResNet(nn.Module):
    """Denoised track and peak logits from noisy coverage.

    Parameters
    ----------
    filters : channels of every residual conv
    kernel_size : taps per conv (odd, so 'same' padding is symmetric)
    dilation : spacing of the taps, in bases
    reg_blocks, cls_blocks : residual blocks in the regression / classification branch (>= 1 each)
    convs_per_block : convs per residual block (>= 1)
    cls_sees_features : the classification branch also takes the regression branch's last hidden features
        (``filters`` channels) besides the 1-channel track; off in the reference shape
    input_skip : the track is ReLU(input + the regression branch's output): a learned correction of the (depth-
        normalised) input rather than a track built from nothing; off in the reference shape

    ``peak_temperature`` (not a weight, not in the state_dict) is the temperature inference divides the peak logits
    by before the sigmoid (:mod:`atacdenoise.model.calibration`): 1.0 unless :func:`load_model` read a calibration.
    ``conv_impl`` (not in the state_dict either): ``"torch"``, or ``"triton"`` to run the convolutions, forward and
    backward, on :mod:`atacdenoise.model.gpuconv`'s kernel (training on a GPU with ``ATACDENOISE_GPU_CONV=triton``).
    """

    def __init__(
        self,
        filters: int = 15,
        kernel_size: int = 51,
        dilation: int = 8,
        reg_blocks: int = 5,
        cls_blocks: int = 2,
        convs_per_block: int = 3,
        cls_sees_features: bool = False,
        input_skip: bool = False,
    ):
        super().__init__()
        _check_hparams(filters, kernel_size, dilation, reg_blocks, cls_blocks, convs_per_block)
        self.hparams = dict(
            filters=filters,
            kernel_size=kernel_size,
            dilation=dilation,
            reg_blocks=reg_blocks,
            cls_blocks=cls_blocks,
            convs_per_block=convs_per_block,
            cls_sees_features=bool(cls_sees_features),
            input_skip=bool(input_skip),
        )
        block = dict(filters=filters, kernel_size=kernel_size, dilation=dilation, convs=convs_per_block)
        self.reg_blocks = nn.Sequential(*(ResBlock(1 if i == 0 else filters, **block) for i in range(reg_blocks)))
        self.reg_out = nn.Conv1d(filters, 1, 1)
        cls_in = 1 + (filters if cls_sees_features else 0)
        self.cls_blocks = nn.Sequential(*(ResBlock(cls_in if i == 0 else filters, **block) for i in range(cls_blocks)))
        self.cls_out = nn.Conv1d(filters, 1, 1)
        self.peak_temperature = 1.0
        self.conv_impl = "torch"

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: float32[B, L] noisy coverage (input-transformed) -> (track float[B, L] >= 0, peak logits float[B, L])."""
        if self.conv_impl == "triton":
            from atacdenoise.model.gpuconv import train_forward

            return train_forward(self, x)
        h = self.reg_blocks(x.unsqueeze(1))
        r = self.reg_out(h)
        # input_skip: the network learns a correction of its (depth-normalised) input, starting from it
        track = torch.relu(r + x.unsqueeze(1) if self.hparams["input_skip"] else r)
        c = torch.cat([track, h], dim=1) if self.hparams["cls_sees_features"] else track
        logits = self.cls_out(self.cls_blocks(c))
        return track.squeeze(1), logits.squeeze(1)

    @property
    def track_receptive_field(self) -> int:
        """Bases of input that influence one base of the track (odd)."""
        h = self.hparams
        return 1 + h["reg_blocks"] * h["convs_per_block"] * (h["kernel_size"] - 1) * h["dilation"]

    @property
    def receptive_field(self) -> int:
        """Bases of input that influence one base of the peak logits (odd)."""
        h = self.hparams
        return (
            self.track_receptive_field + h["cls_blocks"] * h["convs_per_block"] * (h["kernel_size"] - 1) * h["dilation"]
        )

    @property
    def n_parameters(self) -> int:
        """Return the number of parameters (all weights and biases)."""
        return sum(p.numel() for p in self.parameters())


def _check_hparams(filters: int, kernel_size: int, dilation: int, reg_blocks: int, cls_blocks: int, convs: int) -> None:
    for name, value in (
        ("filters", filters),
        ("dilation", dilation),
        ("reg_blocks", reg_blocks),
        ("cls_blocks", cls_blocks),
        ("convs_per_block", convs),
    ):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise InputError(f"model setting {name}={value!r}: expected a positive integer")
    if not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1 or kernel_size % 2 == 0:
        raise InputError(f"model setting kernel_size={kernel_size!r}: expected a positive odd integer ('same' padding)")


MODEL_KEYS = (
    "preset",
    "filters",
    "kernel_size",
    "dilation",
    "reg_blocks",
    "cls_blocks",
    "convs_per_block",
    "cls_sees_features",
    "input_skip",
)


def resolve_hparams(hparams: dict | None) -> dict[str, Any]:
    """Expand ``{"preset": name, **overrides}`` into the full DenoiseResNet kwargs."""
    hparams = dict(hparams or {})
    preset = hparams.pop("preset", None) or DEFAULT_PRESET
    if preset not in PRESETS:
        raise InputError(f"model preset {preset!r} is unknown; choose one of {sorted(PRESETS)}")
    unknown = sorted(set(hparams) - set(MODEL_KEYS))
    if unknown:
        raise InputError(f"model settings {unknown} are unknown; expected some of {list(MODEL_KEYS)}")
    out = {"cls_sees_features": False, "input_skip": False, **PRESETS[preset]}
    out.update(hparams)
    return out


def build_model(hparams: dict | None = None) -> DenoiseResNet:
    """Build a DenoiseResNet from ``hparams`` (may hold ``preset`` plus overrides of single sizes)."""
    return DenoiseResNet(**resolve_hparams(hparams))


def transform_input(x: Tensor | np.ndarray, input_transform: dict | None, scale: float = 1.0) -> Tensor | np.ndarray:
    """Noisy coverage -> network input.

    ``{"kind": "none"}`` (identity), ``{"kind": "log1p"}``, or ``{"kind": "depth", "reference": R}``:
    the track times ``scale`` = R / (its total signal), so that inputs of any sequencing depth reach the
    network at the depth of the training data's clean tracks (see :func:`depth_scale`). The caller
    computes ``scale`` where the track's total is known (dataset windows in training, the input bigWig
    in inference).
    """
    kind = (input_transform or {}).get("kind", "none")
    if kind == "none":
        return x
    if kind == "log1p":
        return torch.log1p(x) if isinstance(x, Tensor) else np.log1p(x)
    if kind == "depth":
        return x * scale if scale != 1.0 else x
    raise InputError(f"input_transform kind {kind!r} is unknown; choose one of {list(INPUT_TRANSFORMS)}")


def depth_scale(input_transform: dict | None, total: float, source: str = "input track") -> float:
    """Factor that brings a track with total signal ``total`` to the reference depth (1.0 unless kind "depth")."""
    t = input_transform or {}
    if t.get("kind") != "depth":
        return 1.0
    if not total > 0:
        raise InputError(
            f"{source}: the track is empty (total signal {total}); depth normalisation needs some coverage"
        )
    reference = t.get("reference")
    if not reference or reference <= 0:
        raise InputError(
            f"{source}: input_transform {t} has no positive 'reference' total; "
            "the model file is incomplete, re-train it"
        )
    return float(reference) / float(total)


def save_model(
    path: str | Path,
    model: nn.Module,
    *,
    preprocessing: dict,
    window: dict,
    input_transform: dict,
    threshold: float,
    extra: dict | None = None,
) -> None:
    """Write ``model.pt`` atomically (format ``atacdenoise-model/1``); ``extra`` keys join the top level."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "atacdenoise_version": __version__,
        "hparams": dict(model.hparams),
        "preprocessing": dict(preprocessing),
        "window": {"interval": int(window["interval"]), "pad": int(window["pad"])},
        "input_transform": dict(input_transform),
        "threshold": float(threshold),
        "epoch": None,
        "val_metrics": {},
    }
    for key, value in (extra or {}).items():
        if key in ("format", "hparams", "state_dict"):
            raise ValueError(f"save_model: extra may not override {key!r}")
        ckpt[key] = value
    ckpt["state_dict"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_output(path) as tmp:
        torch.save(ckpt, tmp)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[DenoiseResNet, dict]:
    """Rebuild the model of a ``model.pt``; returns (model in eval mode, metadata without the state_dict).

    The model's ``peak_temperature`` is the file's calibration (1.0 without one), which inference applies.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: model file not found; train a model first or fix the model path in the config")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, not a torch file, pickled foreign objects
        raise InputError(
            f"{path}: not a readable atacdenoise model file ({type(exc).__name__}: {str(exc)[:200]}); "
            "re-train or re-copy it"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise InputError(
            f"{path}: not an atacdenoise model (format {found!r}, expected {FORMAT!r}); "
            "models of other tools cannot be loaded"
        )
    try:
        model = DenoiseResNet(**ckpt["hparams"])
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise InputError(
            f"{path}: model file is inconsistent ({type(exc).__name__}: {str(exc)[:200]}); re-train it"
        ) from exc
    model.to(map_location).eval()
    meta = {k: copy.deepcopy(v) for k, v in ckpt.items() if k != "state_dict"}
    try:
        model.peak_temperature = temperature_of(meta)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    return model, meta
