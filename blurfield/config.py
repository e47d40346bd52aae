"""The one typed configuration schema of blurfield, and how configs are loaded.

A resolved config is ``schema <- YAML files (in order) <- key=value overrides``. YAML files
may name other files to merge first with a ``defaults:`` list (paths relative to ``conf/``,
without ``.yaml``), which is how ``conf/experiment/*.yaml`` compose the per-concern files.

Every section is a dataclass; OmegaConf checks keys and types against it, and
:func:`load_config` turns its errors into one-line :class:`ConfigError` messages.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf import errors as oc_errors

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class ConfigError(ValueError):
    """A bad config: the message is one line that names the key and what is allowed."""


# --------------------------------------------------------------------------- sections


@dataclass
class ModelCfg:
    """The kernel estimator (DESIGN §3)."""

    n_basis: int = 25  # B, number of basis kernels
    kernel_size: int = 33  # K, basis kernel support (only 33 is implemented)
    base_width: int = 64  # w, width of the first level; 64 = the paper's network
    gamma_in: float = 2.2  # the estimator's own input transform x**gamma_in - 0.5


@dataclass
class DataCfg:
    """The training/validation stream read by BlurDataModule (DESIGN §8)."""

    train_shards: str = "data/shards/builtin/train-{000000..000003}.tar"
    val_shards: str = "data/shards/builtin/val-000000.tar"
    samples_per_epoch: int = 6000  # total over all ranks and workers
    val_samples: int = 64
    batch_size: int = 4
    workers: int = 2
    crop_size: int = 256  # blurry crop; the sharp crop is crop_size + kernel_size - 1
    shuffle_buffer: int = 256
    seed: int = 0


@dataclass
class TrainCfg:
    """Optimisation, schedule, devices, checkpoints (DESIGN §4)."""

    epochs: int = 1200
    lr: float = 1e-4
    lr_halve_every: int = 150  # epochs
    kernel_loss_p_switch_epoch: int = 300  # p = 2 before, p = 1 from this epoch on
    kernel_loss_weight: float = 1.0
    reblur_loss_weight: float = 1.0
    reblur_space: str = "display"  # display | linear (the authors' code)
    l1_chunk: int = 4096  # pixels per chunk of the p = 1 kernel loss
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    channels_last: bool = False
    compile: bool = False
    out_dir: str = "runs"
    run_name: str = "estimator"
    resume: bool = False
    seed: int = 0
    max_steps: int = -1
    limit_val_batches: int = 4
    log_every_n_steps: int = 10
    image_every_n_epochs: int = 10
    progress_bar: bool = True


@dataclass
class LoggingCfg:
    """Weights & Biases (offline unless WANDB_MODE says otherwise) or CSV."""

    logger: str = "wandb"  # wandb | csv | none
    project: str = "blurfield"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    mode: str = "offline"  # used when WANDB_MODE is not set


@dataclass
class RestoreCfg:
    """Non-uniform Richardson–Lucy and the estimate/deblur commands (DESIGN §5)."""

    checkpoint: str | None = None  # estimator weights; None = the shipped model
    field: str | None = None  # a field .npz to restore with instead of estimating
    out_dir: str = "out"
    iterations: int = 30
    saturation: bool = True
    sat_threshold: float = 0.99
    z_dilate: int = 3
    tv_weight: float = 1e-3
    early_stop: bool = True
    padding: str = "same"
    method: str = "auto"
    gamma: float = 2.2  # data gamma (1 for linear data such as Köhler's)
    scale: Any = "auto"  # auto | a downscale factor >= 1
    max_megapixels: float = 1.5  # what the estimator sees with scale=auto
    tile: int = 1024  # restore in tiles of this size (0 = never tile)
    tile_overlap: int = 128
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class KernelsCfg:
    """The camera-shake kernel bank (data_prep kernels; KERNELS.md)."""

    generator: str = "tremor"  # tremor | boracchi
    count: int = 10000
    seed: int = 0
    kernel_size: int = 33
    out_dir: str = "data/kernels"
    chunk_size: int = 65536


@dataclass
class ShardsCfg:
    """Synthetic training shards (data_prep shards; DESIGN §2)."""

    source: str = "builtin"  # builtin | ade20k | folder
    root: str | None = None
    num_samples: int = 256
    out_dir: str = "data/shards/builtin"
    seed: int = 0
    workers: int = 2
    shard_size: int = 64
    val_fraction: float = 0.125
    kernel_size: int = 33
    gamma: float = 2.2
    normalize_masks: bool = True
    max_objects: int = 3
    brightness_min: float = 0.5
    brightness_max: float = 1.5
    scene_size: int = 512


@dataclass
class EvalCfg:
    """blurfield evaluate (DESIGN §7)."""

    benchmark: str = "synthetic"
    root: str | None = None
    out_dir: str = "eval_out"
    limit: int = 0  # 0 = every image


@dataclass
class Config:
    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    logging: LoggingCfg = field(default_factory=LoggingCfg)
    restore: RestoreCfg = field(default_factory=RestoreCfg)
    kernels: KernelsCfg = field(default_factory=KernelsCfg)
    shards: ShardsCfg = field(default_factory=ShardsCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)


# --------------------------------------------------------------------------- loading


def resolve_config_path(name: str | Path) -> Path:
    """A config file by path, or by name relative to ``conf/`` (``experiment/tiny``)."""
    p = Path(name)
    candidates = [p, p.with_suffix(".yaml"), CONF_DIR / p, (CONF_DIR / p).with_suffix(".yaml")]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(
        f"config file '{name}' not found (looked for it as a path and under {CONF_DIR})"
    )


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> list[DictConfig]:
    """The file and, first, the files its ``defaults:`` list names (recursively)."""
    if path in seen:
        raise ConfigError(f"{path}: 'defaults' loop through {[str(s) for s in seen]}")
    try:
        node = OmegaConf.load(path)
    except Exception as e:  # yaml errors carry line numbers; keep the first line
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: a config file must be a mapping of sections")
    out: list[DictConfig] = []
    defaults = node.pop("defaults", None)
    for name in defaults or []:
        out += _read_yaml(resolve_config_path(str(name)), seen + (path,))
    out.append(node)
    return out


def _one_line(e: Exception) -> str:
    """OmegaConf's multi-line messages reduced to the line a user needs."""
    msg = str(e).splitlines()[0].strip()
    if isinstance(e, oc_errors.ConfigKeyError):
        key = getattr(e, "full_key", None) or ""
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        allowed = _allowed_keys(parent)
        if allowed:
            guess = difflib.get_close_matches(key.rsplit(".", 1)[-1], allowed, n=1)
            hint = f" Did you mean '{guess[0]}'?" if guess else ""
            return f"unknown key '{key}'.{hint} Allowed: {', '.join(allowed)}"
    if isinstance(e, oc_errors.ValidationError):
        key = getattr(e, "full_key", None)
        typ = _key_type(key) if key else None
        extra = f" (expected {typ})" if typ else ""
        return f"bad value for '{key}': {msg}{extra}"
    return msg


def _allowed_keys(parent: str) -> list[str]:
    node: Any = OmegaConf.structured(Config)
    for part in [p for p in parent.split(".") if p]:
        node = node.get(part) if isinstance(node, DictConfig) else None
    return list(node.keys()) if isinstance(node, DictConfig) else []


def _key_type(key: str) -> str | None:
    cls: Any = Config
    typ: Any = None
    for part in key.split("."):
        try:
            hints = typing.get_type_hints(cls)
        except TypeError:
            return None
        if part not in hints:
            return None
        typ = cls = hints[part]
    return getattr(typ, "__name__", str(typ))


def load_config(
    files: list[str | Path] | None = None, overrides: list[str] | None = None
) -> DictConfig:
    """Merge the schema, the YAML files in order, then ``key=value`` overrides.

    Raises :class:`ConfigError` with a one-line message on an unknown key, a wrong type,
    a missing file or bad YAML.
    """
    layers = [OmegaConf.structured(Config)]
    for f in files or []:
        layers += _read_yaml(resolve_config_path(f))
    for o in overrides or []:
        if "=" not in o:
            raise ConfigError(f"override '{o}' is not of the form key=value")
    try:
        cfg = OmegaConf.merge(*layers)
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except oc_errors.OmegaConfBaseException as e:
        raise ConfigError(_one_line(e)) from None
    assert isinstance(cfg, DictConfig)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
