"""The demo's page (step 6 of :mod:`demo.pipeline`): the training curves of its run and
``<out>/index.html`` with every image, the fields, the PSNR table and the commands."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blurfield import html

if TYPE_CHECKING:
    from demo.pipeline import DemoImage, Settings

NOT_CURVES = ("kernel_loss_p",)  # logged per epoch but a schedule, not a curve


# --------------------------------------------------------------------------- curves


def _series_name(column: str) -> tuple[str, str] | None:
    """A metrics.csv column -> (metric, series), e.g. ``train/loss_step`` -> (loss, train
    (step)); None for columns that are not curves."""
    if "/" not in column:
        return None
    split, name = column.split("/", 1)
    for suffix, label in (("_step", " (step)"), ("_epoch", " (epoch mean)")):
        if name.endswith(suffix):
            name, split = name[: -len(suffix)], split + label
            break
    return None if name in NOT_CURVES else (name, split)


def training_curves(run_dir: Path) -> tuple[dict[str, dict[str, list]], str]:
    """``{metric: {series: [(x, y), ...]}}`` and the x label, from ``metrics.csv`` (against
    the step) or else ``summary.json`` (against the epoch)."""
    import csv

    groups: dict[str, dict[str, list[tuple[float, float]]]] = {}
    f = run_dir / "metrics.csv"
    if f.is_file():
        with open(f, newline="") as fh:
            for row in csv.DictReader(fh):
                for col, v in row.items():
                    key = _series_name(col or "")
                    if key is None or v in ("", None) or row.get("step") in ("", None):
                        continue
                    groups.setdefault(key[0], {}).setdefault(key[1], []).append(
                        (float(row["step"]), float(v)))
        return groups, "step"
    for h in training_history(run_dir):
        for col, v in h.items():
            key = _series_name(col)
            if key is not None and isinstance(v, (int, float)):
                groups.setdefault(key[0], {}).setdefault(key[1], []).append(
                    (float(h["epoch"]) + 1, float(v)))
    return groups, "epoch"


def training_history(run_dir: Path) -> list[dict[str, float]]:
    """The per-epoch metrics of a run (``summary.json`` of the RunSummary callback)."""
    f = run_dir / "summary.json"
    if not f.is_file():
        return []
    return list(json.loads(f.read_text()).get("history", []))


def loss_switch(run_dir: Path, xlabel: str) -> list[tuple[float, str]]:
    """Where the kernel loss switched from L2 to L1 (``kernel_loss_p`` 2 -> 1): the global
    step (or the number of epochs) at the start of the first epoch with p = 1."""
    history = training_history(run_dir)
    for prev, h in zip(history, history[1:]):
        if h.get("kernel_loss_p") == 1 and prev.get("kernel_loss_p") != 1:
            x = float(prev["step"]) if xlabel == "step" else float(prev["epoch"]) + 1
            return [(x, "L2 -> L1")]
    return []


def training_charts(run_dir: Path) -> list[str]:
    """One SVG chart per metric (loss first), its train and val series together, with the
    kernel-loss switch marked."""
    groups, xlabel = training_curves(run_dir)
    vlines = loss_switch(run_dir, xlabel)
    charts = []
    for name, series in sorted(groups.items(), key=lambda kv: (kv[0] != "loss", kv[0])):
        series = {k: sorted(v) for k, v in sorted(series.items())}
        ys = [y for pts in series.values() for _, y in pts if math.isfinite(y)]
        log_y = bool(ys) and min(ys) > 0 and max(ys) / min(ys) > 20
        charts.append(html.line_chart(series, title=name, xlabel=xlabel, ylabel=name,
                                      log_y=log_y, vlines=vlines))
    return charts


# --------------------------------------------------------------------------- page


def _rel(s: Settings, path: Path) -> str:
    return path.relative_to(s.out).as_posix()


def image_sections(s: Settings, images: list[DemoImage]) -> list[str]:
    """Per input: blurry | restored (estimated field) | restored (true field) | ground
    truth, then the estimated and the true field pictures."""
    res = s.out / "results"
    parts = []
    for im in images:
        row = [(_rel(s, im.path), "blurry input")]
        fields = []
        for folder, what in ((res, "estimated field"), (res / "true_field", "true field")):
            if (folder / f"{im.stem}_restored.png").is_file():
                row.append((_rel(s, folder / f"{im.stem}_restored.png"), f"restored, {what}"))
            if (folder / f"{im.stem}_kernels.png").is_file():
                fields.append((_rel(s, folder / f"{im.stem}_kernels.png"),
                               f"{what}: basis PSFs | mixing | per-pixel PSFs"))
        if im.reference is not None:
            row.append((_rel(s, im.reference), "ground truth (sharp)"))
        parts.append(html.section(im.stem, html.paragraph(im.caption),
                                  html.image_grid(row, columns=4),
                                  html.image_grid(fields, columns=2), level=3))
    return parts


def write_page(s: Settings, images: list[DemoImage], rows: list[dict[str, Any]],
               info: dict[str, Any]) -> Path:
    """``<out>/index.html``."""
    run_dir = Path(info["run_dir"])
    charts = training_charts(run_dir)
    epochs = len(training_history(run_dir))
    seconds = info["timings"].get("train", 0.0)
    when = f"in {seconds:.0f} s" if seconds >= 1 else "(kept from an earlier demo run)"
    timing = [{"step": k, "seconds": v} for k, v in info["timings"].items()]
    parts = [
        html.paragraph(f"Fields estimated by {info['model']}.",
                       cls=None if info["checkpoint"] is None else "note"),
        html.section("PSNR on held-out synthetic samples (dB)", html.paragraph(
            "Against the sharp image each blurry window was made from (linear sharp image "
            "clipped at 1, as the synthesiser saturates). Both restorations are written by "
            f"blurfield deblur (Richardson-Lucy, at most {s.iterations} iterations, "
            "saturation-aware, TV), once with the estimated field and once with the "
            "ground-truth field (--field)."), html.table(rows)),
        html.section("Images", *image_sections(s, images)),
        html.section("Training curves (experiment/tiny)", html.paragraph(
            f"Run {run_dir}: {epochs} epoch(s) {when}; "
            "W&B offline files in its wandb/ folder, these curves from its metrics.csv. "
            "The training loss jumps where the kernel loss switches from L2 to L1 "
            "(train.kernel_loss_p_switch_epoch; a different scale, not a divergence); "
            "validation keeps the L2 kernel loss in val/loss and adds val/kernel_l1."),
            html.grid(charts, columns=2) if charts else html.paragraph("no metrics logged")),
        html.section("How this page was made", html.code_block("\n".join(info["commands"])),
                     html.table(timing, floatfmt="{:.1f}")),
    ]
    return html.write_page(s.out / "index.html", html.page("blurfield demo", *parts))
