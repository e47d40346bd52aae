"""The experiment logger of a run, from the ``logging`` config section.

- ``wandb``: Weights & Biases, **offline** unless ``WANDB_MODE`` says otherwise (or
  ``logging.mode`` is set to online). Files go to ``<run_dir>/wandb``; the run id is kept in
  ``<run_dir>/wandb_id`` so a resumed run continues the same W&B run. The full resolved
  config is the run's config; project, entity, group and tags come from the section.
- ``csv``: Lightning's CSVLogger, ``<run_dir>/metrics.csv`` and ``hparams.yaml``. Lightning
  deletes an existing ``metrics.csv`` when it starts, so a resumed run first moves the
  earlier one to ``metrics.1.csv`` (``.2``, ... on later resumes).
- ``none``: no logger (``summary.json`` is still written by the RunSummary callback).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from blurfield.config import LoggerKind, LoggingCfg, WandbMode
from blurfield.fileio import write_text_atomic


def _wandb_id(run_dir: Path) -> str:
    """The run's W&B id: read from ``<run_dir>/wandb_id``, or made and written there."""
    path = run_dir / "wandb_id"
    if path.is_file():
        text = path.read_text().strip()
        if text:
            return text
    run_id = secrets.token_hex(4)
    write_text_atomic(path, run_id + "\n")
    return run_id


def keep_earlier_metrics(run_dir: Path) -> Path | None:
    """Move ``<run_dir>/metrics.csv`` to the first free ``metrics.<n>.csv`` (n = 1, 2, ...)
    and return the new path; None if there is none. Rank 0 only (the one that writes it)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    path = run_dir / "metrics.csv"
    if rank_zero_only.rank != 0 or not path.is_file():
        return None
    n = 1
    while (run_dir / f"metrics.{n}.csv").exists():
        n += 1
    return path.rename(run_dir / f"metrics.{n}.csv")


def build_logger(logging_cfg: LoggingCfg, run_dir: str | Path, run_name: str,
                 config: dict[str, Any] | None = None) -> Any:
    """A Lightning logger (or ``False`` for none).

    Args:
        logging_cfg: the ``logging`` section (a DictConfig of it works too).
        run_dir: the run directory ``<out_dir>/<run_name>``.
        run_name: the W&B run name.
        config: the full resolved config (plain dict), stored with the W&B run and
            as the CSV logger's hyperparameters.
    Raises:
        ValueError naming ``logging.logger``, ``logging.mode`` or ``WANDB_MODE`` on an
        unknown value.
    """
    kind = LoggerKind.parse(logging_cfg.logger, "logging.logger")
    run_dir = Path(run_dir)
    if kind == "none":
        return False
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        keep_earlier_metrics(run_dir)
        logger = CSVLogger(save_dir=str(run_dir), name="", version="")
        if config is not None:
            logger.log_hyperparams(config)
        return logger
    env = os.environ.get("WANDB_MODE")
    if env:
        mode = WandbMode.parse("offline" if env == "dryrun" else env, "WANDB_MODE")
    else:
        mode = WandbMode.parse(logging_cfg.mode, "logging.mode")
    from lightning.pytorch.loggers import WandbLogger

    (run_dir / "wandb").parent.mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        name=run_name,
        save_dir=str(run_dir),
        project=logging_cfg.project,
        entity=logging_cfg.entity or None,
        group=logging_cfg.group or None,
        tags=[str(t) for t in (logging_cfg.tags or [])],
        id=_wandb_id(run_dir),
        config=config,
        mode=str(mode),
    )
