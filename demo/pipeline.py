"""``python -m demo`` (``make demo``): the whole pipeline on built-in data, in minutes.

    python -m demo [--out demo_out] [--train-minutes 3] [--quick]

Steps, each printed with its time; a rerun reuses what is already there (the shard build
is resumable, a finished training run is kept: delete ``demo_out/runs`` to train again):

1. **shards**: a small built-in shard set (``python -m data_prep shards --config
   shards/builtin`` with 128 scenes of 320 px) in ``<out>/shards``.
2. **train**: ``blurfield train --config experiment/tiny`` on those shards for a few minutes
   (a Lightning ``Timer`` stops it), W&B offline logs and a ``metrics.csv`` (an extra
   CSVLogger, for the curves) in ``<out>/runs/tiny``.
3. **inputs**: scikit-image's ``clock`` (a real photo with camera shake, grayscale) and the
   centre windows of a few held-out (val) synthetic samples, as PNG in ``<out>/inputs``;
   their ground truth in ``<out>/truth``.
4. **estimate + deblur**: ``blurfield estimate`` and ``blurfield deblur`` on those PNGs with
   the shipped model (``load_estimator()``), or the model just trained when none is shipped
   (``--model trained`` forces it), into ``<out>/results``; then ``blurfield deblur
   --field`` with each synthetic input's ground-truth field into ``results/true_field``.
5. **score**: PSNR (dB) against the sharp image of each synthetic input, of the blurry
   input, of the restoration with the estimated field and of the one with the true field
   (the evaluation's reference and metric), printed and on the page.
6. **page**: ``<out>/index.html``: every image blurry / restored / ground truth side by
   side, the estimated and true fields, the PSNR table and the training curves.

``--quick`` shrinks everything (a dozen 320 px scenes, two training steps of a narrow
network, one 64 px window, 3 RL iterations) so the whole path runs in seconds (the test).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from blurfield import html
from blurfield.config import RestoreOptions
from demo.page import write_page

TRAIN_RUN = "tiny"


class DemoError(RuntimeError):
    """A step that cannot go on; the message is one line saying what to do."""


@dataclass
class Settings:
    """Sizes of the demo (the defaults take about 5 minutes on 2 busy CPU cores)."""

    out: Path = Path("demo_out")
    samples: int = 128  # shard samples (about 1/8 go to val)
    scene_size: int = 320  # px, built-in dead-leaves scenes (>= 288 for a 256 window)
    val_fraction: float = 0.125
    shard_workers: int = 2
    train_seconds: float = 180.0  # the Timer stops training after this
    # extra key=value for train: 8x the tiny config's epochs, about 2 minutes in all
    train_overrides: list[str] = field(default_factory=lambda: ["data.samples_per_epoch=256"])
    synthetic: int = 3  # held-out samples to restore and score
    window: int = 192  # px, centre window of each synthetic sample (multiple of 32)
    iterations: int = field(default_factory=lambda: RestoreOptions().iterations)  # deblur's
    model: str = "shipped"  # shipped (fall back to trained if none) | trained
    photo_crop: int = 0  # centre crop of the clock photo (0 = whole photo)
    progress: bool = True


def quick_settings(out: Path) -> Settings:
    """Tiny everything: the whole path in well under a minute (tests)."""
    return Settings(
        out=out, samples=12, scene_size=320, val_fraction=0.25, shard_workers=0,
        train_seconds=60.0, synthetic=1, window=64, iterations=3, model="trained",
        photo_crop=96, progress=False,
        train_overrides=["model.base_width=4", "model.n_basis=4", "train.max_steps=2",
                         "train.epochs=1", "data.batch_size=1", "data.samples_per_epoch=2",
                         "data.val_samples=1", "train.limit_val_batches=1", "data.workers=0",
                         "data.shuffle_buffer=4", "data.crop_size=64",
                         "train.image_every_n_epochs=0", "logging.logger=csv",
                         "train.progress_bar=false"],
    )


@dataclass
class DemoImage:
    """One demo input: the blurry PNG and, for synthetic samples, the truth and the sample."""

    stem: str
    path: Path
    caption: str
    reference: Path | None = None  # sharp display image of the window (synthetic)
    ref: Any = None  # the same as a (3, h, w) float tensor
    sample: Any = None  # blurfield.data.schema.Sample (synthetic)
    window: tuple[int, int, int, int] | None = None  # (top, left, h, w) in the sample


def _log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


# --------------------------------------------------------------------------- 1. shards


def shard_overrides(s: Settings) -> list[str]:
    return [f"shards.out_dir={s.out / 'shards'}", f"shards.num_samples={s.samples}",
            f"shards.scene_size={s.scene_size}", f"shards.val_fraction={s.val_fraction}",
            f"shards.workers={s.shard_workers}", f"shards.progress={str(s.progress).lower()}"]


def build_shards(s: Settings) -> dict[str, Any]:
    """Build (or finish) the demo shards; returns data_prep's manifest."""
    from blurfield.config import load_config
    from data_prep.shards import build

    cfg = load_config(["shards/builtin"], shard_overrides(s))
    try:
        manifest = build(cfg, progress=s.progress)
    except ValueError as e:
        raise DemoError(f"shards: {e} (for the demo: delete {s.out / 'shards'} and "
                        f"{s.out / 'runs'}, or pass another --out)") from None
    if not manifest["patterns"]["train"] or not manifest["patterns"]["val"]:
        raise DemoError(f"shards: {manifest['counts']} has no train or no val sample; "
                        "raise --samples")
    return manifest


# --------------------------------------------------------------------------- 2. train


def train_overrides(s: Settings, manifest: dict[str, Any]) -> list[str]:
    p = manifest["patterns"]
    return [f"data.train_shards={p['train']}", f"data.val_shards={p['val']}",
            f"train.out_dir={s.out / 'runs'}", f"train.run_name={TRAIN_RUN}",
            "train.log_every_n_steps=1", *s.train_overrides]


def train_tiny(s: Settings, manifest: dict[str, Any]) -> Path:
    """Train experiment/tiny for at most ``s.train_seconds``; the run directory. A run
    that already has ``estimator.pt`` is kept; an interrupted one is resumed. Besides the
    configured logger (W&B offline) a CSVLogger writes ``metrics.csv`` for the curves."""
    from blurfield.config import load_config
    from blurfield.tasks.train import fit, prepare, resume_checkpoint

    run_dir = s.out / "runs" / TRAIN_RUN
    if (run_dir / "estimator.pt").is_file():
        _log(f"train: keeping the finished run {run_dir} (delete it to train again)")
        return run_dir
    os.environ.setdefault("WANDB_MODE", "offline")  # never reach the network
    os.environ.setdefault("WANDB_SILENT", "true")
    overrides = train_overrides(s, manifest)
    if resume_checkpoint(run_dir) is not None:
        overrides.append("train.resume=true")
    _log(f"train: blurfield train --config experiment/tiny {' '.join(overrides)} "
         f"(stopped after {s.train_seconds:.0f} s)")
    cfg = load_config(["experiment/tiny"], overrides)
    try:
        setup = prepare(cfg)
    except ValueError as e:
        raise DemoError(f"train: {e}") from None
    from lightning.pytorch.callbacks import Timer
    from lightning.pytorch.loggers import CSVLogger

    trainer = setup["trainer"]
    trainer.callbacks.append(
        Timer(duration=timedelta(seconds=s.train_seconds), interval="step", verbose=False))
    if not any(isinstance(lg, CSVLogger) for lg in trainer.loggers):
        trainer.loggers = [*trainer.loggers, CSVLogger(str(run_dir), name="", version="")]
    return fit(setup)


# --------------------------------------------------------------------------- 3. inputs


def _save_png(path: Path, image: Any) -> None:
    from blurfield.viz import save_png

    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(path, image)


def photo_input(s: Settings) -> DemoImage:
    """scikit-image's ``clock`` (grayscale, real camera shake) as ``inputs/clock.png``."""
    import numpy as np
    from skimage import data

    img = np.asarray(data.clock())
    if s.photo_crop:
        h, w = img.shape
        c = min(s.photo_crop, h, w)
        img = img[(h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c]
    path = s.out / "inputs" / "clock.png"
    _save_png(path, img)
    return DemoImage("clock", path, "skimage.data.clock(): a real photo with camera shake "
                     f"({img.shape[1]} x {img.shape[0]}, grayscale); no ground truth")


def synthetic_inputs(s: Settings, manifest: dict[str, Any]) -> list[DemoImage]:
    """Centre windows of the first ``s.synthetic`` val samples: the blurry PNG in inputs/,
    in truth/ the sharp image a perfect restoration would give (evaluation's reference)."""
    from blurfield.data.schema import decode_sample, image_tensor, sharp_linear
    from blurfield.evaluation.protocols import synthetic_reference
    from blurfield.evaluation.readers import load_raw_sample, synthetic
    from blurfield.evaluation.synthetic import centre_window

    out = []
    for item in synthetic(manifest["patterns"]["val"])[: s.synthetic]:
        sample = decode_sample(load_raw_sample(item))
        k = int(sample.meta["kernel_size"])
        top, left, h, w = window = centre_window(*sample.sharp.shape[:2], k, s.window)
        blurry = image_tensor(sample.blurry)[:, top : top + h, left : left + w]
        u = sharp_linear(sample)[:, top : top + h, left : left + w]
        ref = synthetic_reference(u, float(sample.meta["gamma"]))
        stem = f"synth_{item.id}"
        path, ref_path = s.out / "inputs" / f"{stem}.png", s.out / "truth" / f"{stem}.png"
        _save_png(path, blurry.permute(1, 2, 0).numpy())
        _save_png(ref_path, ref.permute(1, 2, 0).numpy())
        n = sample.num_layers
        out.append(DemoImage(stem, path, f"held-out synthetic sample {item.id}: centre {w} x "
                             f"{h} window, {n} layer{'s' if n != 1 else ''} (background + "
                             f"{n - 1} object{'s' if n != 2 else ''}), each with its own "
                             "camera-shake kernel", ref_path, ref, sample, window))
    return out


# --------------------------------------------------------------------------- 4. commands


def shipped_model_path() -> Path:
    """Where ``load_estimator()`` looks for the shipped compact estimator."""
    from blurfield.api import SHIPPED_WEIGHTS

    return Path(SHIPPED_WEIGHTS)


def choose_model(s: Settings, run_dir: Path | None) -> tuple[str | None, str]:
    """(checkpoint for ``restore.checkpoint``, None = the shipped model; a sentence)."""
    trained = run_dir / "estimator.pt" if run_dir is not None else None
    if s.model == "shipped" and shipped_model_path().is_file():
        return None, f"the shipped compact estimator ({shipped_model_path().name})"
    if trained is None or not trained.is_file():
        raise DemoError(f"no estimator: neither {shipped_model_path()} nor a trained "
                        f"{trained} exists")
    why = ("(--model trained)" if s.model == "trained" else
           f"because no shipped model exists yet at {shipped_model_path()}")
    return str(trained), f"the tiny model trained by this demo, {trained}, {why}"


def run_cli(words: list[str]) -> str:
    """Run ``blurfield <words>`` in this process; the command line. DemoError on failure."""
    from blurfield.cli import main

    line = "blurfield " + " ".join(map(shlex.quote, words))
    _log(line)
    rc = main(words)
    if rc != 0:
        raise DemoError(f"`{line}` failed with exit status {rc} (its message is above)")
    return line


def estimate_and_deblur(s: Settings, images: list[DemoImage], checkpoint: str | None
                        ) -> list[str]:
    """``blurfield estimate`` and ``blurfield deblur`` on every input into results/."""
    inputs = [str(im.path) for im in images]
    common = ["--out", str(s.out / "results")]
    if checkpoint is not None:
        common.append(f"restore.checkpoint={checkpoint}")
    return [run_cli(["estimate", *inputs, *common]),
            run_cli(["deblur", *inputs, *common, f"restore.iterations={s.iterations}"])]


def deblur_true_fields(s: Settings, images: list[DemoImage]) -> list[str]:
    """For each synthetic input: its ground-truth field as ``true_field/<stem>_field.npz``
    (layer kernels as the basis, the smoothed layer masks as the mixing) with its picture
    ``<stem>_kernels.png`` (as ``blurfield estimate`` draws one), and ``blurfield deblur
    --field`` with it: the same restoration as with the estimated field, the field exact."""
    from blurfield.api import Field, save_field
    from blurfield.commands.estimate import field_picture
    from blurfield.data.schema import gt_field

    out = s.out / "results" / "true_field"
    lines = []
    for im in images:
        if im.sample is None:
            continue
        gt = gt_field(im.sample, im.window)
        masks = gt.masks.float().clamp(min=0)
        masks = masks / masks.sum(0, keepdim=True).clamp(min=1e-12)
        _, _, h, w = im.window
        field = Field(gt.kernels.float(), masks, 1.0, (h, w), float(im.sample.meta["gamma"]),
                      "ground truth")
        npz = out / f"{im.stem}_field.npz"
        out.mkdir(parents=True, exist_ok=True)
        save_field(npz, field)
        blurry = im.sample.blurry[im.window[0] : im.window[0] + h,
                                  im.window[1] : im.window[1] + w]
        _save_png(out / f"{im.stem}_kernels.png", field_picture(blurry, field))
        lines.append(run_cli(["deblur", str(im.path), "--field", str(npz), "--out", str(out),
                              f"restore.iterations={s.iterations}"]))
    return lines


# --------------------------------------------------------------------------- 5. score


def _psnr_file(path: Path, ref: Any) -> float:
    import torch

    from blurfield.evaluation import metrics
    from blurfield.imageio import read_image

    if not path.is_file():
        return float("nan")
    img, _ = read_image(path)
    t = torch.from_numpy(img).permute(2, 0, 1).float().expand_as(ref)
    return float(metrics.psnr(ref, t))


def score(s: Settings, images: list[DemoImage]) -> list[dict[str, Any]]:
    """PSNR (dB) of the blurry input and of both restorations (8-bit files as written)
    against the reference of each synthetic input, and their means."""
    rows: list[dict[str, Any]] = []
    res = s.out / "results"
    for im in images:
        if im.ref is None:
            continue
        rows.append({"sample": im.stem, "layers": im.sample.num_layers,
                     "blurry": _psnr_file(im.path, im.ref),
                     "restored, estimated field": _psnr_file(
                         res / f"{im.stem}_restored.png", im.ref),
                     "restored, true field": _psnr_file(
                         res / "true_field" / f"{im.stem}_restored.png", im.ref)})
    if rows:
        mean: dict[str, Any] = {"sample": "mean", "layers": ""}
        for key in ("blurry", "restored, estimated field", "restored, true field"):
            mean[key] = sum(r[key] for r in rows) / len(rows)
        rows.append(mean)
    return rows


# --------------------------------------------------------------------------- main


def run(s: Settings) -> dict[str, Any]:
    """All steps; returns what the page shows (rows, model, timings, paths)."""
    timings: dict[str, float] = {}
    commands: list[str] = []
    t_all = time.perf_counter()

    def step(name: str, fn: Any, *a: Any) -> Any:
        t0 = time.perf_counter()
        _log(f"{name} ...")
        out = fn(*a)
        timings[name] = time.perf_counter() - t0
        _log(f"{name}: {timings[name]:.1f} s")
        return out

    s.out.mkdir(parents=True, exist_ok=True)
    manifest = step("shards", build_shards, s)
    commands.append("python -m data_prep shards --config shards/builtin "
                    + " ".join(shard_overrides(s)))
    run_dir = step("train", train_tiny, s, manifest)
    commands.append("blurfield train --config experiment/tiny "
                    + " ".join(map(shlex.quote, train_overrides(s, manifest)))
                    + f"  # + a {s.train_seconds:.0f} s Timer and a CSVLogger")
    images = step("inputs", lambda: [photo_input(s), *synthetic_inputs(s, manifest)])
    checkpoint, model_text = choose_model(s, run_dir)
    _log(f"model: {model_text}")
    commands += step("estimate+deblur", estimate_and_deblur, s, images, checkpoint)
    commands += step("deblur with the true field", deblur_true_fields, s, images)
    rows = score(s, images)
    timings["total"] = time.perf_counter() - t_all
    info = {"model": model_text, "checkpoint": checkpoint, "run_dir": str(run_dir),
            "timings": timings, "commands": commands}
    page = write_page(s, images, rows, info)
    print("\nPSNR (dB) on held-out synthetic samples:\n" + html.text_table(rows))
    print(f"\nmodel: {model_text}\npage: {page}\ntotal {timings['total']:.0f} s")
    return {**info, "rows": rows, "page": page, "images": images}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split(
        "\n")[0].split(": ", 1)[-1])
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: the whole path in seconds")
    p.add_argument("--train-minutes", type=float, default=None, help="training time (3)")
    p.add_argument("--samples", type=int, default=None, help="shard samples (128)")
    p.add_argument("--synthetic", type=int, default=None, help="held-out samples scored (3)")
    p.add_argument("--model", choices=("shipped", "trained"), default=None,
                   help="restore with the shipped model (default) or the one trained here")
    a = p.parse_args(argv)
    s = quick_settings(Path(a.out)) if a.quick else Settings(out=Path(a.out))
    if a.train_minutes is not None:
        s.train_seconds = a.train_minutes * 60
    for key in ("samples", "synthetic", "model"):
        if getattr(a, key) is not None:
            setattr(s, key, getattr(a, key))
    try:
        run(s)
    except DemoError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
