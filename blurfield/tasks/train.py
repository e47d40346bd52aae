"""The Trainer builder of ``blurfield train`` (the command: :mod:`blurfield.commands.train`):
checks, callbacks, logger, resume and Slurm requeue around one LightningModule
(docs/design.md §4).

A run lives in ``<train.out_dir>/<train.run_name>/``:

    config.yaml              the resolved config (rewritten at each start)
    checkpoints/last.ckpt    every epoch; best-epochNNNN.ckpt: lowest val/loss
    summary.json             n_basis, schedule, per-epoch metrics, final and best values
    estimator.pt             the final weights (blurfield.models.io format)
    wandb/ | metrics.csv     the logger's files; pictures/ (PNG) without W&B

``train.resume=true`` continues from the newest of ``checkpoints/last.ckpt`` and a Slurm
``hpc_ckpt_N.ckpt`` (step, epoch, optimizer, scheduler, loss switch, history); with none
there it starts afresh. Under Slurm (``SLURM_JOB_ID`` set) the Trainer uses
``SLURMEnvironment(auto_requeue=True)``: on SIGUSR1 Lightning saves ``hpc_ckpt_N.ckpt`` in
the run directory and requeues the job, and a requeued job (``SLURM_RESTART_COUNT`` > 0)
resumes by itself. ``train.task=deblurgan`` trains the DeblurGAN reblur fine-tune
(``blurfield.tasks.finetune``) with the same machinery and writes ``generator.pt``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from blurfield.config import Config, InitKernels, Task, as_config
from blurfield.fileio import write_text_atomic

PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "64-true")
MONITOR = "val/loss"


# --------------------------------------------------------------------------- checks


def check_shards(pattern: str, key: str) -> None:
    """Raise ValueError naming ``key`` unless the shard pattern names existing shards
    (``blurfield.data.datamodule.expand_shards``: braces, globs, ``::`` lists, URLs)."""
    from blurfield.data.datamodule import expand_shards

    if not pattern:
        raise ValueError(f"{key} is empty: run `make shards` or set {key}")
    expand_shards(pattern, key)


def check_config(cfg: DictConfig | Config) -> None:
    """Values the schema's types cannot check (its Enums check the choices); ValueError
    naming the key."""
    c = as_config(cfg)
    t = c.train
    if t.precision not in PRECISIONS:
        raise ValueError(f"train.precision: {t.precision!r} is not one of {', '.join(PRECISIONS)}")
    for key in ("epochs", "lr_halve_every", "l1_chunk", "l1_stride", "val_every_n_epochs"):
        if getattr(t, key) < 1:
            raise ValueError(f"train.{key}: {getattr(t, key)} must be >= 1")
    if not t.run_name or "/" in t.run_name:
        raise ValueError(f"train.run_name: {t.run_name!r} must be a non-empty name without '/'")
    if t.freeze_kernels_epochs < 0:
        raise ValueError(f"train.freeze_kernels_epochs: {t.freeze_kernels_epochs} must be >= 0")
    if c.data.crop_size % 32:
        raise ValueError(f"data.crop_size: {c.data.crop_size} must be a multiple of 32 (five 2x "
                         "poolings)")


# --------------------------------------------------------------------------- checkpoints


def _newest(paths: list[Path]) -> Path | None:
    paths = [p for p in paths if p.is_file()]
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest of ``checkpoints/last.ckpt`` and ``hpc_ckpt_N.ckpt`` (highest N)."""
    hpc = sorted(run_dir.glob("hpc_ckpt_*.ckpt"),
                 key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    return _newest([run_dir / "checkpoints" / "last.ckpt"] + hpc[-1:])


def slurm_requeued() -> bool:
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def slurm_plugins() -> list[Any]:
    """``[SLURMEnvironment(auto_requeue=True)]`` inside a Slurm job (not an interactive one)."""
    if not os.environ.get("SLURM_JOB_ID"):
        return []
    if os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return []
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=True)]


# --------------------------------------------------------------------------- training


def run_dir_of(cfg: DictConfig | Config) -> Path:
    """``<train.out_dir>/<train.run_name>``."""
    t = as_config(cfg).train
    return Path(t.out_dir) / t.run_name


def prepare(cfg: DictConfig, datamodule: Any = None) -> dict[str, Any]:
    """Everything up to ``trainer.fit``; ValueError (naming the key) on a bad setup.

    ``datamodule``: a LightningDataModule to use instead of ``BlurDataModule(cfg.data)``
    (tests); then the shards are not checked.
    """
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

    from blurfield.tasks.callbacks import FieldPictures, KernelLossSwitch, RunSummary
    from blurfield.tasks.estimator import KernelEstimatorModule
    from blurfield.tasks.loggers import build_logger

    c = as_config(cfg)  # typed from here on
    check_config(c)
    t = c.train
    run_dir = run_dir_of(c)
    resume = t.resume or slurm_requeued()
    ckpt_path = resume_checkpoint(run_dir)
    if ckpt_path is not None and not resume:
        raise ValueError(
            f"train.run_name: {run_dir} already has checkpoints ({ckpt_path.name}): set "
            "train.resume=true to continue it, or choose another train.run_name/out_dir")
    if datamodule is None:
        check_shards(c.data.train_shards, "data.train_shards")
        if c.data.val_shards:  # "" = no validation
            check_shards(c.data.val_shards, "data.val_shards")
        from blurfield.data.datamodule import BlurDataModule

        datamodule = BlurDataModule(c.data, kernel_size=c.model.kernel_size)

    L.seed_everything(t.seed, workers=True, verbose=False)
    deblurgan = t.task == Task.deblurgan  # the reblur fine-tune (blurfield.tasks.finetune)
    if deblurgan:
        from blurfield.tasks.finetune import ReblurFinetuneModule

        module = ReblurFinetuneModule(cfg)
    else:
        module = KernelEstimatorModule(c.model, t)
        if t.init_from and ckpt_path is None:  # start from weights (not a resume)
            from blurfield.models.io import load_any_estimator

            init = load_any_estimator(t.init_from)
            if init.hparams_dict != module.model.hparams_dict:
                raise ValueError(f"train.init_from={t.init_from}: its hyperparameters "
                                 f"{init.hparams_dict} differ from model.* "
                                 f"{module.model.hparams_dict}")
            module.model.load_state_dict(init.state_dict())
        elif t.init_kernels == InitKernels.lines and ckpt_path is None:
            from blurfield.models.basis_init import fit_kernel_head, line_dictionary

            m = module.model
            dist = fit_kernel_head(m, line_dictionary(m.n_basis, m.kernel_size),
                                   seed=t.seed)
            print(f"train.init_kernels=lines: kernel head fitted to {m.n_basis} line kernels "
                  f"(mean L1 distance {dist:.3f})", flush=True)
    full = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    logger = build_logger(c.logging, run_dir, t.run_name, full)  # type: ignore[arg-type]
    mc = c.model
    info = {
        "run_name": t.run_name,
        "group": c.logging.group,
        "tags": list(c.logging.tags),
        "n_basis": mc.n_basis, "kernel_size": mc.kernel_size, "base_width": mc.base_width,
        "epochs_planned": t.epochs,
        "kernel_loss_p_switch_epoch": t.kernel_loss_p_switch_epoch,
        "lr_halve_every": t.lr_halve_every,
        "samples_per_epoch": c.data.samples_per_epoch,
        "batch_size": c.data.batch_size,
    }
    callbacks: list[Any] = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints", filename="best-epoch{epoch:04d}",
            monitor=MONITOR, mode="min", save_top_k=1,
            auto_insert_metric_name=False, save_on_train_epoch_end=True,
        ),
        # last.ckpt at every epoch end: Lightning's save_last only writes it when the
        # monitored checkpoint is written, i.e. when val/loss improves.
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
            every_n_epochs=1, save_on_train_epoch_end=True, enable_version_counter=False,
        ),
        KernelLossSwitch(t.kernel_loss_p_switch_epoch),
        RunSummary(run_dir / "summary.json", info, monitor=MONITOR),
        FieldPictures(t.image_every_n_epochs, run_dir / "pictures"),
    ]
    if deblurgan:  # estimator-only callbacks; the fine-tune logs its own restored samples
        callbacks = [c for c in callbacks if not isinstance(c, (KernelLossSwitch, FieldPictures))]
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if t.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    trainer = L.Trainer(
        default_root_dir=str(run_dir),
        max_epochs=t.epochs,
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        logger=logger,
        callbacks=callbacks,
        plugins=slurm_plugins() or None,
        log_every_n_steps=t.log_every_n_steps,
        limit_val_batches=t.limit_val_batches,
        check_val_every_n_epoch=t.val_every_n_epochs,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=t.progress_bar,
    )
    if resume and ckpt_path is None and trainer.is_global_zero:
        print(f"blurfield train: nothing to resume in {run_dir}; starting afresh")
    return {"trainer": trainer, "module": module, "datamodule": datamodule,
            "ckpt_path": str(ckpt_path) if resume and ckpt_path else None,
            "run_dir": run_dir, "logger": logger,
            "config_yaml": OmegaConf.to_yaml(cfg, resolve=True)}


def fit(setup: dict[str, Any]) -> Path:
    """Run ``trainer.fit``; write config.yaml before and estimator.pt after. The run dir."""
    from blurfield.models.io import save_estimator

    trainer, module, run_dir = setup["trainer"], setup["module"], setup["run_dir"]
    if trainer.is_global_zero:
        write_text_atomic(run_dir / "config.yaml", setup["config_yaml"])
    try:
        trainer.fit(module, datamodule=setup["datamodule"], ckpt_path=setup["ckpt_path"])
    finally:
        _finish_wandb(setup["logger"])
    if trainer.is_global_zero:
        if hasattr(module, "generator"):  # train.task=deblurgan: the fine-tuned generator
            from blurfield.models.deblurgan import save_generator

            save_generator(module.generator, run_dir / "generator.pt")
        else:
            save_estimator(module.model, run_dir / "estimator.pt")
    return run_dir


def _finish_wandb(logger: Any) -> None:
    from lightning.pytorch.loggers import WandbLogger

    if isinstance(logger, WandbLogger) and logger._experiment is not None:
        logger.experiment.finish()


def train(cfg: DictConfig, datamodule: Any = None) -> Path:
    """Train as configured; returns the run directory. ValueError on a bad setup."""
    return fit(prepare(cfg, datamodule))

