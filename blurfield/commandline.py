"""The command-line grammar shared by ``blurfield`` and ``python -m data_prep``:
``<prog> <command> [--config FILE ...] [--flag VALUE ...] [key=value ...]``.

A command module provides ``HELP``, optional ``ALIASES`` (flags that are aliases of config
keys), an optional ``add_arguments(parser)`` and ``run(cfg, args) -> int``. This module
sits below both programs (docs/design.md §10), so ``data_prep`` parses its subcommands
the same way without importing ``blurfield.cli``.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable, Mapping
from types import ModuleType

from blurfield.errors import UserError

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def command_parser(prog: str, mod: ModuleType, *, epilog: str, config_example: str,
                   inputs_help: str,
                   common: Callable[[argparse.ArgumentParser], None] | None = None,
                   ) -> argparse.ArgumentParser:
    """The parser of one command module: ``--config`` (repeatable), ``common(parser)``'s
    flags, one flag per entry of ``mod.ALIASES``, ``mod.add_arguments(parser)``'s own, and
    the positional ``inputs`` (files and ``key=value`` overrides).

    Shared by ``blurfield`` and ``python -m data_prep``; ``config_example`` names a config
    under conf/ for the ``--config`` help.
    """
    p = argparse.ArgumentParser(prog=prog, description=getattr(mod, "HELP", ""), epilog=epilog)
    p.add_argument("--config", "-c", action="append", default=[], metavar="FILE",
                   help=f"YAML config (path, or name under conf/ e.g. {config_example}); "
                        "repeatable")
    if common is not None:
        common(p)
    from blurfield.config_reference import key_comment

    for flag, key in getattr(mod, "ALIASES", {}).items():
        meaning = key_comment(key).replace("%", "%%")  # argparse formats help with %
        p.add_argument(flag, dest="alias_" + key.replace(".", "__"), default=None,
                       metavar=key.split(".")[-1].upper(),
                       help=f"{meaning} (alias of {key})" if meaning else f"alias of {key}")
    if hasattr(mod, "add_arguments"):
        mod.add_arguments(p)
    p.add_argument("inputs", nargs="*", help=inputs_help)
    return p


def split_overrides(args: argparse.Namespace) -> list[str]:
    """Take the ``key=value`` words out of ``args.inputs`` (in place) and return them as
    config overrides, followed by one ``key=value`` per alias flag that was given."""
    overrides = [w for w in args.inputs if _OVERRIDE.match(w)]
    args.inputs = [w for w in args.inputs if not _OVERRIDE.match(w)]
    for k, v in vars(args).items():
        if k.startswith("alias_") and v is not None:
            overrides.append(f"{k[6:].replace('__', '.')}={v}")
    return overrides


def run_command(label: str, mod: ModuleType, parser: argparse.ArgumentParser,
                argv: list[str]) -> int:
    """Parse ``argv`` (``key=value`` words may come before and after flags), load the config
    with its overrides and return ``mod.run(cfg, args)``. A :class:`ConfigError` or
    :class:`UserError` prints ``"<label>: <message>"`` on one line and returns 2; Ctrl-C
    returns 130."""
    from blurfield.config import ConfigError, load_config

    args = parser.parse_intermixed_args(argv)
    overrides = split_overrides(args)
    try:
        cfg = load_config(args.config, overrides)
        return int(mod.run(cfg, args) or 0)
    except (ConfigError, UserError) as e:
        print(f"{label}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{label}: interrupted", file=sys.stderr)
        return 130


def dispatch(program: str, table: Mapping[str, str], argv: list[str] | None, *,
             usage: str, parser: Callable[[str, ModuleType], argparse.ArgumentParser],
             noun: str = "command") -> int:
    """``<program> <name> ...``: print ``usage`` for no name or ``-h``/``--help``/``help``
    (exit 0), refuse a name not in ``table`` (one line, exit 2), else import the module
    ``table[name]`` (only now: ``import lightning`` alone costs seconds) and
    :func:`run_command` it with ``parser(name, module)``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in table:
        print(f"{program}: unknown {noun} '{name}'. {noun.capitalize()}s: {', '.join(table)}",
              file=sys.stderr)
        return 2
    mod = importlib.import_module(table[name])
    return run_command(f"{program} {name}", mod, parser(name, mod), rest)
