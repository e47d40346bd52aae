"""``blurfield evaluate``: estimate + restore (or a deblurrer) over a benchmark, scored.

    blurfield evaluate --benchmark realblur_j --root /data/RealBlur [--checkpoint W]
    blurfield evaluate --config eval/koehler --root /data/Koehler
    blurfield evaluate --benchmark gopro --root /data/GOPRO_Large --deblurrer G.pt
    blurfield evaluate --benchmark synthetic --root data/shards/builtin/val-000000.tar

Writes into ``--out`` (eval.out_dir): ``results.csv`` (one row per image, rewritten
atomically after each one), ``summary.md`` / ``summary.json`` (means, hardware, command),
``pictures/<id>.jpg`` and ``index.html``; the folder benchmark also writes
``restored/<id>_restored.png`` and ``<id>_field.npz``. A rerun with the same settings skips
images that already have a row (``eval.resume=false`` starts over); a rerun with other
settings into the same folder is refused. RL settings come from the ``restore`` section;
``eval.gamma`` / ``eval.saturation`` / ``eval.iterations`` override them (None = the
protocol's defaults, :data:`blurfield.evaluation.protocols.PROTOCOLS`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from blurfield.errors import UserError

HELP = "score estimate + restore (or a deblurrer) on a benchmark: CSV, summary, pictures"
ALIASES = {
    "--benchmark": "eval.benchmark",
    "--root": "eval.root",
    "--checkpoint": "eval.checkpoint",
    "--deblurrer": "eval.deblurrer",
    "--out": "eval.out_dir",
    "--limit": "eval.limit",
    "--device": "eval.device",
}
SIGNATURE_KEYS = ("benchmark", "root", "checkpoint", "deblurrer", "gamma", "saturation",
                  "iterations", "quantize", "window", "koehler_frame_step", "koehler_ssim",
                  "gopro_blur_dir", "ecc_iterations", "ecc_eps", "ecc_gauss", "ecc_levels")
RESTORE_KEYS = ("iterations", "saturation", "tv_weight", "early_stop", "padding", "method",
                "sat_threshold", "z_dilate", "tile", "tile_overlap", "no_harm", "no_harm_probe",
                "no_harm_evidence", "no_harm_noise", "no_harm_min_blur")


@dataclass
class Settings:
    """What one run needs, resolved from the config and the protocol."""

    benchmark: str
    metric: str
    out: Path
    device: torch.device
    gamma: float | None
    saturation: bool
    rl: dict[str, Any]
    scale: Any
    max_megapixels: float
    ev: DictConfig


def load_image(path: Path) -> Tensor:
    """(3, H, W) float32 display values; grayscale is repeated to 3 channels."""
    from blurfield.imageio import read_image

    a, _ = read_image(path)
    t = torch.from_numpy(a).permute(2, 0, 1).contiguous()
    return t.expand(3, -1, -1).contiguous() if t.shape[0] == 1 else t


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- settings


def _settings(cfg: DictConfig) -> Settings:
    from blurfield.api import resolve_device
    from blurfield.evaluation.protocols import PROTOCOLS

    ev = cfg.eval
    if ev.benchmark not in PROTOCOLS:
        raise UserError(f"--benchmark '{ev.benchmark}' is not one of {', '.join(PROTOCOLS)}")
    if not ev.root:
        raise UserError("--root: give the benchmark's folder (or shards for synthetic)")
    if ev.deblurrer and ev.benchmark == "synthetic":
        raise UserError("--deblurrer: the synthetic benchmark scores blur fields; run it "
                        "without --deblurrer")
    proto = PROTOCOLS[ev.benchmark]
    r = cfg.restore
    gamma = ev.gamma if ev.gamma is not None else proto.gamma
    if gamma is None and ev.benchmark != "synthetic":
        gamma = r.gamma
    sat = ev.saturation if ev.saturation is not None else proto.saturation
    sat = r.saturation if sat is None else sat
    rl = {k: r[k] for k in RESTORE_KEYS}
    rl["saturation"] = bool(sat)
    if ev.iterations is not None:
        rl["iterations"] = int(ev.iterations)
    try:
        device = resolve_device(ev.device)
    except ValueError as e:
        raise UserError(f"--device: {e}") from None
    return Settings(ev.benchmark, proto.metric, Path(ev.out_dir), device, gamma, bool(sat),
                    rl, r.scale, float(r.max_megapixels), ev)


def _signature(cfg: DictConfig) -> dict[str, Any]:
    ev = cfg.eval
    sig = {k: ev[k] for k in SIGNATURE_KEYS}
    sig["root"] = str(Path(str(ev.root)).resolve()) if ev.root else None
    sig["restore"] = OmegaConf.to_container(cfg.restore, resolve=True)
    for key in ("device", "out_dir", "threads", "skip_tol", "restore_scale"):  # unused here
        sig["restore"].pop(key, None)
    return json.loads(json.dumps(sig, default=str))


def _check_resume(out: Path, sig: dict[str, Any], resume: bool) -> list[dict[str, Any]]:
    """Earlier rows to keep (same settings), or [] when starting over."""
    from blurfield.evaluation.report import RESULTS, read_rows, write_text_atomic

    path = out / "run.json"
    rows = read_rows(out / RESULTS) if resume else []
    if rows and path.is_file():
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old) | set(sig) if old.get(k) != sig.get(k))
        if diff:
            raise UserError(f"--out {out}: holds results of a run with other settings "
                            f"({', '.join(diff)}); use another --out or eval.resume=false")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(sig, indent=1, sort_keys=True))
    return rows


# --------------------------------------------------------------------------- methods


class Method:
    """Turns a blurry display image into a restoration (and its field, if any)."""

    name = "method"

    def restore(self, blurry: Tensor, s: Settings) -> tuple[Tensor, Any]:
        raise NotImplementedError


class EstimateAndRestore(Method):
    """The estimator, then Richardson–Lucy with the estimated field (:mod:`blurfield.api`)."""

    name = "estimate + RL"

    def __init__(self, path: str | None, device: torch.device):
        from blurfield.api import load_estimator

        try:
            self.model = load_estimator(path, device=device)
        except (ValueError, FileNotFoundError) as e:
            raise UserError(f"--checkpoint: {e}") from None
        self.path = path

    def field(self, blurry: Tensor, s: Settings, gamma: float):
        from blurfield.api import estimate

        return estimate(blurry, self.model, s.scale, max_megapixels=s.max_megapixels,
                        gamma=gamma)

    def restore(self, blurry: Tensor, s: Settings) -> tuple[Tensor, Any]:
        from blurfield.api import deblur

        g = float(s.gamma if s.gamma is not None else 2.2)
        field = self.field(blurry, s, g)
        out = deblur(blurry, field, gamma=g, device=s.device, **s.rl)
        return out.float().cpu(), field


class Generator(Method):
    """A DeblurGAN generator alone (``--deblurrer``)."""

    name = "DeblurGAN generator"

    def __init__(self, path: str, device: torch.device):
        from blurfield.models.deblurgan import load_deblurrer

        try:
            self.g = load_deblurrer(path).to(device)
        except (ValueError, FileNotFoundError) as e:
            raise UserError(f"--deblurrer: {e}") from None
        self.device = device

    def restore(self, blurry: Tensor, s: Settings) -> tuple[Tensor, Any]:
        from blurfield.models.deblurgan import run_generator

        return run_generator(self.g, blurry[None].to(self.device))[0].float().cpu(), None


def reblur_psnr(restored: Tensor, blurry: Tensor, field: Any, gamma: float,
                device: torch.device | str = "cpu") -> float:
    """No-reference consistency: the restoration reblurred by its field (eq. 3, "same"
    padding) vs the blurry photo, PSNR in display values — at the resolution the field was
    estimated at (both images downscaled by ``field.scale``), which keeps it cheap."""
    from blurfield.evaluation.metrics import psnr
    from blurfield.physics import reblur, to_linear
    from blurfield.restore import downscale_image

    r = downscale_image(restored[None].to(device), field.scale)
    b = downscale_image(blurry[None].to(device), field.scale)
    h, w = field.mixing.shape[-2:]
    r, b = r[..., :h, :w], b[..., :h, :w]
    rb = reblur(to_linear(r, gamma), field.kernels[None].to(device),
                field.mixing[None].to(device), gamma=gamma, padding="same")
    return float(psnr(b[0].cpu(), rb[0].cpu()))


# --------------------------------------------------------------------------- one image


def _frames(paths: tuple[Path, ...]) -> Iterator[Tensor]:
    for p in paths:
        yield load_image(p)


def _evaluate_photo(item, method: Method, s: Settings) -> tuple[dict, list, float]:
    """One benchmark photo: restore, score with the protocol. (row, panels, seconds)."""
    from blurfield.evaluation import metrics, protocols

    blurry = load_image(item.blurry)
    _sync(s.device)
    t0 = time.perf_counter()
    restored, field = method.restore(blurry, s)
    _sync(s.device)
    seconds = time.perf_counter() - t0
    scored = metrics.quantize(restored) if s.ev.quantize else restored
    row: dict[str, Any] = {}
    sharp_panel = None
    if s.metric == "realblur":
        sharp = load_image(item.sharp[0])
        row |= protocols.score_realblur(scored, sharp, iterations=s.ev.ecc_iterations,
                                        eps=s.ev.ecc_eps, gauss_size=s.ev.ecc_gauss,
                                        levels=s.ev.ecc_levels, device=s.device)
        row |= protocols.prefix(protocols.score_plain(blurry, sharp), "blurry")
        sharp_panel = sharp
    elif s.metric == "koehler":
        res = protocols.score_koehler({"restored": scored, "blurry": blurry},
                                      _frames(item.sharp), s.ev.koehler_ssim, s.device)
        row |= res["restored"]
        row |= protocols.prefix(res["blurry"], "blurry")
        sharp_panel = load_image(item.sharp[int(res["restored"]["best_frame"])])
    elif s.metric == "plain":
        sharp = load_image(item.sharp[0])
        row |= protocols.score_plain(scored, sharp)
        row |= protocols.prefix(protocols.score_plain(blurry, sharp), "blurry")
        sharp_panel = sharp
    if field is not None:
        row["reblur_psnr"] = reblur_psnr(scored, blurry, field, float(s.gamma or 2.2),
                                         s.device)
    panels = [("blurry", blurry), ("restored", restored)]
    if sharp_panel is not None:
        panels.append(("sharp", sharp_panel))
    if field is not None:
        from blurfield.viz import psf_overlay

        panels.append(("PSFs", psf_overlay(blurry.permute(1, 2, 0).numpy(), field.kernels,
                                           field.mixing)))
    if s.benchmark == "folder":
        _save_outputs(s.out / "restored", item.id, restored, field)
    return row, panels, seconds


def _save_outputs(folder: Path, stem: str, restored: Tensor, field: Any) -> None:
    from blurfield.api import save_field
    from blurfield.imageio import write_image

    write_image(folder / f"{stem}_restored.png", restored.permute(1, 2, 0).numpy(), 8)
    if field is not None:
        save_field(folder / f"{stem}_field.npz", field)


def _evaluate_synthetic(item, method: Method, s: Settings) -> tuple[dict, list, float]:
    from blurfield.data.schema import decode_sample
    from blurfield.evaluation.readers import load_raw_sample
    from blurfield.evaluation.synthetic import evaluate_sample

    assert isinstance(method, EstimateAndRestore)
    try:
        sample = decode_sample(load_raw_sample(item))
    except ValueError as e:
        raise UserError(f"{item.shard}: sample {item.id}: {e}") from None
    if not sample.has_field:
        raise UserError(f"{item.shard}: sample {item.id} has no blur field (has_field "
                        "false); the synthetic benchmark needs shards with fields")
    rl = {k: v for k, v in s.rl.items() if k not in ("tile", "tile_overlap")}
    res = evaluate_sample(sample, method.model, window=int(s.ev.window), gamma=s.gamma,
                          rl=rl, device=s.device)
    return res.row, res.panels, res.seconds


# --------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (parser.epilog or "") + (
        " Benchmarks: realblur_j, realblur_r, koehler, gopro, synthetic, folder;"
        " conf/eval/<benchmark>.yaml holds each protocol's settings.")


def _items(s: Settings, root: str) -> list:
    from blurfield.evaluation.readers import read_benchmark

    ev = s.ev
    opts: dict[str, Any] = {}
    if s.benchmark.startswith("realblur"):
        opts["list_file"] = ev.list_file
    elif s.benchmark == "koehler":
        opts["frame_step"] = ev.koehler_frame_step
    elif s.benchmark == "gopro":
        opts["blur_dir"] = ev.gopro_blur_dir
    elif s.benchmark == "folder":
        opts["exclude"] = s.out
    try:
        items = read_benchmark(s.benchmark, root, **opts)
    except ValueError as e:
        raise UserError(str(e)) from None
    return items[: ev.limit] if ev.limit and ev.limit > 0 else items


def run(cfg: DictConfig, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from blurfield.evaluation import report

    s = _settings(cfg)
    ev = s.ev
    items = _items(s, str(ev.root))
    rows = _check_resume(s.out, _signature(cfg), bool(ev.resume))
    wanted = {it.id for it in items}
    done = {r["id"] for r in rows if r.get("id") in wanted}  # other rows stay in the CSV
    todo = [it for it in items if it.id not in done]
    if ev.deblurrer:
        method: Method = Generator(str(ev.deblurrer), s.device)
    else:
        method = EstimateAndRestore(ev.checkpoint or cfg.restore.checkpoint, s.device)
    evaluate = _evaluate_synthetic if s.benchmark == "synthetic" else _evaluate_photo
    n_pics = len(items) if ev.pictures < 0 else int(ev.pictures)
    pic_ids = {it.id for it in items[:n_pics]}
    if done:
        print(f"blurfield evaluate: {len(done)} of {len(items)} images already scored in "
              f"{s.out / report.RESULTS}; doing the other {len(todo)}", file=sys.stderr)
    order = {it.id: i for i, it in enumerate(items)}
    bar = tqdm(todo, desc=s.benchmark, unit="img", dynamic_ncols=True)
    for item in bar:
        try:
            row, panels, seconds = evaluate(item, method, s)
        except ValueError as e:
            raise UserError(f"{item.id}: {e}") from None
        rows.append({"id": item.id, **row, "seconds": seconds})
        rows.sort(key=lambda r: order.get(r["id"], len(order)))
        report.write_rows(s.out / report.RESULTS, rows)
        if item.id in pic_ids:
            report.save_picture(s.out / "pictures" / f"{item.id}.jpg", panels,
                                int(ev.picture_size))
        key = "psnr" if "psnr" in row else ("psnr_est" if "psnr_est" in row else None)
        if key:
            vals = [float(r[key]) for r in rows if key in r and r["id"] in wanted]
            bar.set_postfix({key: f"{sum(vals) / len(vals):.2f}"})
    bar.close()

    rows = [r for r in rows if r["id"] in wanted]  # the summary covers this run's items
    summary = report.summarize(rows)
    info = {
        "benchmark": s.benchmark,
        "method": method.name,
        "images": len(rows),
        "hardware": report.hardware(s.device),
        "checkpoint": None if ev.deblurrer else str(ev.checkpoint or cfg.restore.checkpoint
                                                     or "shipped"),
        "deblurrer": ev.deblurrer,
        "command": "blurfield evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if len(sys.argv) > 1 and sys.argv[1] == "evaluate" else None,
    }
    md = report.write_summary(s.out, summary, info)
    pics = [r["id"] for r in rows if (s.out / "pictures" / f"{r['id']}.jpg").is_file()]
    report.write_index(s.out, rows, info, summary, pics)
    print(md)
    return 0
