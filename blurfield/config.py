"""How configs are loaded against the one typed schema (:mod:`blurfield.config_schema`,
re-exported here with the choices of :mod:`blurfield.options`).

A resolved config is ``schema <- YAML files (in order) <- key=value overrides``. YAML files
may name other files to merge first with a ``defaults:`` list (paths relative to ``conf/``,
without ``.yaml``), which is how ``conf/experiment/*.yaml`` compose the per-concern files.

Every section is a dataclass; OmegaConf checks keys and types against it, and
:func:`load_config` turns its errors into one-line :class:`ConfigError` messages.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf import errors as oc_errors

from blurfield.config_schema import (  # noqa: F401 (re-exported: the schema)
    BoracchiCfg,
    Config,
    DataCfg,
    EvalCfg,
    FinetuneCfg,
    KernelsCfg,
    LoggingCfg,
    MixCfg,
    ModelCfg,
    RestoreCfg,
    ShardsCfg,
    TrainCfg,
    TremorCfg,
)
from blurfield.options import (  # noqa: F401 (re-exported: part of the schema)
    AdeLayout,
    Benchmark,
    BlurMethod,
    Choice,
    ContentLoss,
    Device,
    Generator,
    GoproBlurDir,
    InitKernels,
    InitUpsampling,
    KernelFit,
    KoehlerSsim,
    LoggerKind,
    OperatorPadding,
    Padding,
    ReblurNorm,
    ReblurSpace,
    RestoreOptions,
    RLOptions,
    SceneSource,
    Task,
    WandbMode,
)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class ConfigError(ValueError):
    """A bad config: the message is one line that names the key and what is allowed."""


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
        if isinstance(typ, type) and issubclass(typ, Choice):
            allowed = ", ".join(m.value for m in typ)
            return f"bad value for '{key}': {getattr(e, 'value', '?')!r} is not one of {allowed}"
        extra = f" (expected {getattr(typ, '__name__', typ)})" if typ else ""
        return f"bad value for '{key}': {msg}{extra}"
    return msg


def _allowed_keys(parent: str) -> list[str]:
    node: Any = OmegaConf.structured(Config)
    for part in [p for p in parent.split(".") if p]:
        node = node.get(part) if isinstance(node, DictConfig) else None
    return list(node.keys()) if isinstance(node, DictConfig) else []


def _key_type(key: str) -> Any:
    """The schema's type of a dotted key (a class, or a typing form), None if unknown."""
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
    return typ


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


def as_config(node: Any) -> Any:
    """The config (or one of its sections) as its dataclasses, choices as ``Enum`` members:
    :class:`Config` from a loaded config, e.g. :class:`TrainCfg` from ``cfg.train``. Convert
    once where the config is consumed and read typed fields after that. A dataclass instance
    is returned as is; a bad value is a :class:`ConfigError`."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return node
    try:
        return OmegaConf.to_object(node)
    except oc_errors.OmegaConfBaseException as e:
        raise ConfigError(_one_line(e)) from None


def plain(node: Any) -> Any:
    """``node`` (the config, a section, a list or a value; dataclasses or DictConfig) as
    plain dicts, lists and scalars, choices as their value strings: what JSON files record."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return {f.name: plain(getattr(node, f.name)) for f in dataclasses.fields(node)}
    if isinstance(node, (DictConfig, ListConfig)):
        return plain(OmegaConf.to_container(node, resolve=True))
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(v) for v in node]
    return node.value if isinstance(node, Enum) else node
