"""``python -m data_prep <subcommand> [--config FILE ...] [key=value ...]``: offline data tools.

A subcommand is a module (imported only when it runs) with ``HELP``, optional ``ALIASES``
(flags that are aliases of config keys) and ``add_arguments(parser)``, and
``run(cfg, args) -> int``. Add one with a line in ``SUBCOMMANDS``. ``key=value`` words
override config keys (full keys, e.g. ``kernels.count=1000``); a bad config or a
:class:`blurfield.cli.UserError` prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

SUBCOMMANDS: dict[str, str] = {
    "kernels": "data_prep.kernels.command",
    "shards": "data_prep.shards",
    "gopro": "data_prep.gopro",
}

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def _parser(name: str, mod) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m data_prep {name}",
                                description=getattr(mod, "HELP", ""),
                                epilog="key=value words override config keys.")
    p.add_argument("--config", "-c", action="append", default=[], metavar="FILE",
                   help="YAML config (path, or name under conf/ e.g. kernels/tremor); repeatable")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    for flag, key in getattr(mod, "ALIASES", {}).items():
        p.add_argument(flag, dest="alias_" + key.replace(".", "__"), default=None,
                       metavar=key.split(".")[-1].upper(), help=f"alias of {key}")
    if hasattr(mod, "add_arguments"):
        mod.add_arguments(p)
    p.add_argument("inputs", nargs="*", help="key=value overrides")
    return p


def main(argv: list[str] | None = None) -> int:
    from blurfield.cli import UserError
    from blurfield.config import ConfigError, load_config

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: python -m data_prep <subcommand> [--config FILE ...] [key=value ...]\n\n"
              "subcommands:\n" + "".join(f"  {n}\n" for n in SUBCOMMANDS))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"data_prep: unknown subcommand '{name}'. Subcommands: {', '.join(SUBCOMMANDS)}",
              file=sys.stderr)
        return 2
    mod = importlib.import_module(SUBCOMMANDS[name])
    # intermixed: key=value words may come before and after flags (`--out X count=...`)
    args = _parser(name, mod).parse_intermixed_args(rest)
    overrides = [w for w in args.inputs if _OVERRIDE.match(w)]
    args.inputs = [w for w in args.inputs if not _OVERRIDE.match(w)]
    for k, v in vars(args).items():
        if k.startswith("alias_") and v is not None:
            overrides.append(f"{k[6:].replace('__', '.')}={v}")
    try:
        cfg = load_config(args.config, overrides)
        return int(mod.run(cfg, args) or 0)
    except (ConfigError, UserError) as e:
        print(f"data_prep {name}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"data_prep {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
