"""The ``blurfield`` command: ``blurfield <command> [--config FILE ...] [key=value ...]``.

Each command lives in its own module, imported only when it runs (``import lightning``
alone costs seconds). A command module provides::

    HELP = "one line"
    ALIASES = {"--out": "restore.out_dir", ...}   # flags that are aliases of config keys
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...   # optional
    def run(cfg: DictConfig, args: argparse.Namespace) -> int: ...

Positional words of the form ``key=value`` are config overrides; any other positional
word goes to the command (``args.inputs``). Flags in ``ALIASES`` become overrides too,
applied after the positional ones. A bad config or a :class:`UserError` prints one line
and exits 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable
from types import ModuleType

COMMANDS: dict[str, str] = {
    "config": "blurfield.cli_config",
    "train": "blurfield.tasks.train",
    "estimate": "blurfield.commands.estimate",
    "deblur": "blurfield.commands.deblur",
    "evaluate": "blurfield.evaluation.command",
    "report": "blurfield.tasks.report",
}

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


class UserError(RuntimeError):
    """An error caused by the user's input; the CLI prints its message as one line."""


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


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
    for flag, key in getattr(mod, "ALIASES", {}).items():
        p.add_argument(flag, dest="alias_" + key.replace(".", "__"), default=None,
                       metavar=key.split(".")[-1].upper(), help=f"alias of {key}")
    if hasattr(mod, "add_arguments"):
        mod.add_arguments(p)
    p.add_argument("inputs", nargs="*", help=inputs_help)
    return p


def _parser(name: str, mod: ModuleType) -> argparse.ArgumentParser:
    return command_parser(
        f"blurfield {name}", mod,
        epilog="key=value words override config keys; `blurfield config show` lists them.",
        config_example="experiment/tiny", inputs_help="inputs and key=value overrides")


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


def _usage() -> str:
    lines = ["usage: blurfield <command> [--config FILE ...] [key=value ...]", "", "commands:"]
    for name in COMMANDS:
        lines.append(f"  {name}")
    lines.append("\n`blurfield <command> --help` for a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"blurfield: unknown command '{name}'. Commands: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    mod = _load(name)
    return run_command(f"blurfield {name}", mod, _parser(name, mod), rest)


if __name__ == "__main__":
    sys.exit(main())
