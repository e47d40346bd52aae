"""``python -m data_prep <subcommand> [--config FILE ...] [key=value ...]``: offline data tools.

A subcommand is a module (imported only when it runs) with ``HELP``, optional ``ALIASES``
(flags that are aliases of config keys) and ``add_arguments(parser)``, and
``run(cfg, args) -> int``. Add one with a line in ``SUBCOMMANDS``. ``key=value`` words
override config keys (full keys, e.g. ``kernels.count=1000``); a bad config or a
:class:`blurfield.errors.UserError` prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from blurfield.commandline import command_parser, dispatch

SUBCOMMANDS: dict[str, str] = {
    "kernels": "data_prep.kernels.command",
    "shards": "data_prep.shards.command",
    "gopro": "data_prep.gopro",
    "handmade": "data_prep.handmade",
}


def _quiet_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _parser(name: str, mod: ModuleType) -> argparse.ArgumentParser:
    """The subcommand's parser: the shared grammar, ``--quiet``, its aliases and flags."""
    example = "kernels/tremor" if name == "kernels" else "shards/builtin"
    return command_parser(f"python -m data_prep {name}", mod,
                          epilog="key=value words override config keys (e.g. "
                                 "shards.shard_size=16); a flag 'alias of K' sets key K.",
                          config_example=example, inputs_help="key=value overrides",
                          common=_quiet_flag)


def main(argv: list[str] | None = None) -> int:
    # key=value words may come before and after flags (`--out X count=...`)
    usage = ("usage: python -m data_prep <subcommand> [--config FILE ...] [key=value ...]\n\n"
             "subcommands:\n" + "".join(f"  {n}\n" for n in SUBCOMMANDS))
    return dispatch("data_prep", SUBCOMMANDS, argv, usage=usage, parser=_parser,
                    noun="subcommand")


if __name__ == "__main__":
    sys.exit(main())
