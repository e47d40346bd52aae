"""``blurfield config show [--config FILE ...] [key=value ...]``: the resolved config as YAML."""

from __future__ import annotations

import argparse

from omegaconf import DictConfig

from blurfield.config import to_yaml
from blurfield.errors import UserError

HELP = "print the resolved config (schema <- files <- overrides) as YAML"


def run(cfg: DictConfig, args: argparse.Namespace) -> int:
    """``show`` (the only action): print the resolved config."""
    action = args.inputs[0] if args.inputs else "show"
    if action != "show" or len(args.inputs) > 1:
        raise UserError(f"unknown action {' '.join(args.inputs)!r}; use: blurfield config show")
    print(to_yaml(cfg), end="")
    return 0
