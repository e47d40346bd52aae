"""The config's choices and the Richardson–Lucy options (part of the schema of
:mod:`blurfield.config`, which re-exports everything here).

A :class:`Choice` is an ``Enum`` of the values a key may take; the schema types such keys
with it, so a config with another value is refused when it is loaded. :class:`RLOptions`
and :class:`RestoreOptions` are defined once and shared by the ``restore`` section
(:class:`blurfield.config.RestoreCfg` extends them), :func:`blurfield.api.restore` and
:func:`blurfield.restore.richardson_lucy`.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = [
    "Choice",
    "Padding",
    "BlurMethod",
    "Device",
    "OperatorPadding",
    "Task",
    "ReblurSpace",
    "InitKernels",
    "LoggerKind",
    "WandbMode",
    "ContentLoss",
    "ReblurNorm",
    "InitUpsampling",
    "KoehlerSsim",
    "GoproBlurDir",
    "Benchmark",
    "Generator",
    "KernelFit",
    "SceneSource",
    "AdeLayout",
    "RLOptions",
    "RestoreOptions",
]


# --------------------------------------------------------------------------- choices


class Choice(str, Enum):
    """A config value from a fixed set. The member names are the values (YAML and
    ``key=value`` words name them), and a member compares, hashes, prints and formats as its
    value, so code may pass it where a string is expected."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def parse(cls, value: Any, key: str) -> Any:
        """``value`` as a member (a member, or its value as a string); ValueError naming
        ``key`` and the allowed values otherwise."""
        try:
            return cls(str(value.value if isinstance(value, Enum) else value))
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise ValueError(f"{key}: {value!r} is not one of {allowed}") from None


class Padding(Choice):
    """How a restoration treats the photo's border; both keep its size. (The blur operator
    also has ``"valid"``, which :func:`blurfield.restore.richardson_lucy` alone accepts.)"""

    same = "same"  # mirror (scipy "mirror")
    circular = "circular"  # wrap around


class BlurMethod(Choice):
    """The blur operator's path (:class:`blurfield.physics.BlurField`)."""

    auto = "auto"
    fft = "fft"
    direct = "direct"


class Device(Choice):
    """Where restoration and evaluation run: auto = CUDA when present, else the CPU."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class OperatorPadding(Choice):
    """The blur operator's border (:mod:`blurfield.physics.blur`): ``valid`` shrinks by K - 1."""

    valid = "valid"
    same = "same"
    circular = "circular"


class Task(Choice):
    """What ``blurfield train`` trains."""

    estimator = "estimator"  # the kernel estimator
    deblurgan = "deblurgan"  # the DeblurGAN reblur fine-tune (section finetune)


class ReblurSpace(Choice):
    """Where the reblur loss compares: display values (the paper) or linear light (code)."""

    display = "display"
    linear = "linear"


class InitKernels(Choice):
    """The kernel head's start: the network's init, or fitted to line kernels."""

    network = "network"
    lines = "lines"


class LoggerKind(Choice):
    """Where training logs go."""

    wandb = "wandb"
    csv = "csv"
    none = "none"


class WandbMode(Choice):
    """How W&B runs: offline (files only, synced later), online, or disabled. The
    ``WANDB_MODE`` environment variable, when set, takes precedence."""

    offline = "offline"
    online = "online"
    disabled = "disabled"


class ContentLoss(Choice):
    """The fine-tune's content loss."""

    perceptual = "perceptual"  # MSE of VGG19 conv3_3 features
    mse = "mse"  # MSE of display pixels
    none = "none"


class ReblurNorm(Choice):
    """The fine-tune's reblur error: mean absolute (l1) or squared (l2)."""

    l1 = "l1"
    l2 = "l2"


class InitUpsampling(Choice):
    """The decoder's transposed convolutions at init: random (code) or nearest-neighbour."""

    random = "random"
    nearest = "nearest"


class KoehlerSsim(Choice):
    """Köhler's SSIM: at the frame of best PSNR, or the best over the frames."""

    best = "best"
    max = "max"


class GoproBlurDir(Choice):
    """GoPro's blurry frames: ``blur`` or ``blur_gamma``."""

    blur = "blur"
    blur_gamma = "blur_gamma"


class Benchmark(Choice):
    """What ``blurfield evaluate`` scores (docs/design.md §7)."""

    realblur_j = "realblur_j"
    realblur_r = "realblur_r"
    koehler = "koehler"
    gopro = "gopro"
    synthetic = "synthetic"
    folder = "folder"


class Generator(Choice):
    """The camera-shake kernel generator (data_prep/kernels; docs/kernels.md)."""

    tremor = "tremor"  # hand tremor and postural drift
    boracchi = "boracchi"  # Boracchi & Foi (2012) random trajectories
    mix = "mix"  # either of them per kernel (section kernels.mix)


class KernelFit(Choice):
    """A drawn path that leaves the K x K support: drawn again, or shrunk to fit."""

    reject = "reject"
    shrink = "shrink"


class SceneSource(Choice):
    """The scenes of the shard generator (data_prep/scenes)."""

    builtin = "builtin"  # generated dead-leaves scenes
    ade20k = "ade20k"  # ADE20K photos and instance masks (shards.root)
    folder = "folder"  # any folder of photos with masks beside them (shards.root)


class AdeLayout(Choice):
    """ADE20K's folder layout: found, the full release (ADE20K_2021_17_01) or the 2016
    challenge."""

    auto = "auto"
    full = "full"
    challenge = "challenge"


@functools.cache
def _choice_fields(cls: type) -> tuple[tuple[str, type[Choice]], ...]:
    """(name, Enum) of each field of the dataclass ``cls`` whose type is a :class:`Choice`."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls)
                 if isinstance(hints[f.name], type) and issubclass(hints[f.name], Choice))


# --------------------------------------------------------------------------- restoration


@dataclass
class RLOptions:
    """Richardson–Lucy's options, defined once: the ``restore`` section of the config holds
    them (:class:`RestoreCfg` extends this class), and :func:`blurfield.api.restore` and
    :func:`blurfield.restore.richardson_lucy` take them (docs/design.md §5)."""

    iterations: int = 30  # Richardson–Lucy iterations (at most, with early_stop)
    saturation: bool = True  # saturation-aware updates (Whyte et al. 2014)
    sat_threshold: float = 0.99  # linear value treated as saturated
    z_dilate: int = 3  # dilation of the saturated-pixel mask z (pixels)
    tv_weight: float = 1e-3  # TV regularisation (eq. 14); 0 = off
    early_stop: bool = True  # stop when the reblur error stops improving
    padding: Padding = Padding.same  # same (mirror) | circular; both keep the photo's size
    method: BlurMethod = BlurMethod.auto  # auto | fft | direct (the blur operator's path)
    skip_tol: float | None = 1e-3  # drop elements mixed <= this per tile; Hx off <= B tol range(x)
    rank_tol: float | None = 0.05  # principal kernels per tile: each kernel within this (rel. L2)

    def __post_init__(self) -> None:
        for name, typ in _choice_fields(type(self)):
            setattr(self, name, typ.parse(getattr(self, name), name))

    @classmethod
    def make(cls, base: Any = None, **overrides: Any) -> Any:
        """An instance of ``cls`` from the fields of ``base`` (any object with them as
        attributes: an options object, the ``restore`` section of a config; None: the
        defaults) and keyword ``overrides``; choices given as strings become members.
        TypeError on an unknown keyword, ValueError naming a bad choice."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown option(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(names)}")
        values = {} if base is None else {n: getattr(base, n) for n in names if hasattr(base, n)}
        return cls(**{**values, **overrides})

    def rl_kwargs(self) -> dict[str, Any]:
        """The fields of :class:`RLOptions` (not of a subclass) as keyword arguments."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(RLOptions)}


@dataclass
class RestoreOptions(RLOptions):
    """What :func:`blurfield.api.restore` does around Richardson–Lucy: tiles, the device, the
    no-harm rule (:mod:`blurfield.restore.noharm`) and the scale RL runs at."""

    iterations: int = 10  # RL iterations (at most); RL's own default is the paper's 30 (README)
    field_iterations: int = 10  # at most this many RL iterations with the network's own field
    tile: int = 1024  # restore in tiles of this size (0 = never tile)
    tile_overlap: Any = "auto"  # pixels around each tile, or auto = 2 (K - 1) at full size
    no_harm: bool = True  # keep only as much of the restoration as the field earns (noharm.py)
    no_harm_probe: int = 10  # RL iterations of each probe of the field and its variants
    no_harm_evidence: float = 0.2  # log(U_turned / U_field) for a full restoration
    no_harm_margin: float = 0.25  # the half-size copy may explain up to e^margin x better
    no_harm_max_unexplained: float = 0.45  # U above this: the photo lacks the claimed blur
    no_harm_shrink: int = 1  # also try the kernels at 0.71, ... of their size (steps)
    no_harm_window: int = 256  # probes on four squares of this side (0 = the whole photo)
    no_harm_noise: float = 0.5  # discrepancy: stop RL at this x the noise variance
    no_harm_min_blur: float = 1.0  # px; a field blurring less leaves the photo as is
    no_harm_spread: float = 0.0  # 0 = off; RL stops when its spread in flat squares tops this x
    no_harm_slope: float | None = 0.1  # a directed blur's spectral slope below this: left as is
    restore_scale: Any = "full"  # full | field | a factor in [1, the field's scale]
