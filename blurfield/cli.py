"""The ``blurfield`` command: ``blurfield <command> [--config FILE ...] [key=value ...]``.

Each command lives in its own module, ``blurfield/commands/<command>.py``, imported only
when it runs (``import lightning`` alone costs seconds). A command module provides::

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
import sys
from types import ModuleType

# UserError lives in blurfield.errors and the command grammar in blurfield.commandline (below
# every other layer); both are re-exported here for code that imports them from the CLI.
from blurfield.commandline import command_parser, dispatch, run_command, split_overrides
from blurfield.errors import UserError

__all__ = ["COMMANDS", "UserError", "command_parser", "main", "run_command", "split_overrides"]

COMMANDS: dict[str, str] = {
    name: f"blurfield.commands.{name}"
    for name in ("config", "train", "estimate", "deblur", "evaluate", "report")
}


def _parser(name: str, mod: ModuleType) -> argparse.ArgumentParser:
    return command_parser(
        f"blurfield {name}", mod,
        epilog="key=value words override config keys; `blurfield config show` lists them.",
        config_example="experiment/tiny", inputs_help="inputs and key=value overrides")


def _usage() -> str:
    lines = ["usage: blurfield <command> [--config FILE ...] [key=value ...]", "", "commands:"]
    for name in COMMANDS:
        lines.append(f"  {name}")
    lines.append("\n`blurfield <command> --help` for a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return dispatch("blurfield", COMMANDS, argv, usage=_usage(), parser=_parser)


if __name__ == "__main__":
    sys.exit(main())
