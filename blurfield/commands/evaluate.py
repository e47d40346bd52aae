"""``blurfield evaluate``: estimate + restore (or a deblurrer) over a benchmark, scored.

    blurfield evaluate --benchmark realblur_j --root /data/RealBlur [--checkpoint W]
    blurfield evaluate --config eval/koehler --root /data/Koehler
    blurfield evaluate --benchmark gopro --root /data/GOPRO_Large --deblurrer G.pt
    blurfield evaluate --benchmark synthetic --root data/shards/builtin/val-000000.tar

Writes into ``--out`` (eval.out_dir): ``results.csv`` (one row per image, rewritten
atomically after each one; photos (and the synthetic protocol's estimated field)
restored under the no-harm rule add its ``decision``, ``blend``, ``kernel_scale`` and
``decision_reason``), ``summary.md`` / ``summary.json``
(means, the gain over the blurry input and the decisions counted, hardware, command),
``pictures/<id>.jpg`` and ``index.html``; the folder benchmark also writes
``restored/<id>_restored.png`` and ``<id>_field.npz`` (with the decision). A rerun with
the same settings skips images that already have a row (``eval.resume=false`` starts
over); a rerun with other settings into the same folder is refused. RL settings come from
the ``restore`` section; ``eval.gamma`` / ``eval.saturation`` / ``eval.iterations``
override them (None = the protocol's defaults,
:data:`blurfield.evaluation.protocols.PROTOCOLS`). The per-image work is
:mod:`blurfield.evaluation.benchmark`'s.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from blurfield.config import RestoreOptions, as_config
from blurfield.errors import UserError
from blurfield.evaluation import benchmark
from blurfield.evaluation.benchmark import EstimateAndRestore, Generator, Method, Settings

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
# The restore options evaluation uses (and records in its resume signature); skip_tol and
# restore_scale keep the API's defaults.
RESTORE_KEYS = ("iterations", "field_iterations", "saturation", "tv_weight", "early_stop",
                "padding", "method", "sat_threshold", "z_dilate", "rank_tol", "tile",
                "tile_overlap", "no_harm", "no_harm_probe",
                "no_harm_evidence", "no_harm_margin", "no_harm_max_unexplained",
                "no_harm_shrink", "no_harm_window", "no_harm_noise", "no_harm_min_blur",
                "no_harm_spread", "no_harm_slope")


# --------------------------------------------------------------------------- settings


def _settings(cfg: DictConfig) -> Settings:
    """The run's settings from the typed config and the benchmark's protocol."""
    from blurfield.api import resolve_device
    from blurfield.commands import estimate_options
    from blurfield.evaluation.protocols import PROTOCOLS

    c = as_config(cfg)
    ev = c.eval
    if ev.benchmark not in PROTOCOLS:
        raise UserError(f"--benchmark '{ev.benchmark}' is not one of {', '.join(PROTOCOLS)}")
    if not ev.root:
        raise UserError("--root: give the benchmark's folder (or shards for synthetic)")
    if ev.deblurrer and ev.benchmark == "synthetic":
        raise UserError("--deblurrer: the synthetic benchmark scores blur fields; run it "
                        "without --deblurrer")
    proto = PROTOCOLS[ev.benchmark]
    r = c.restore
    gamma = ev.gamma if ev.gamma is not None else proto.gamma
    if gamma is None and ev.benchmark != "synthetic":
        gamma = r.gamma
    sat = ev.saturation if ev.saturation is not None else proto.saturation
    sat = r.saturation if sat is None else sat
    iterations = r.iterations if ev.iterations is None else ev.iterations
    opts = RestoreOptions.make(r, saturation=sat, iterations=iterations)
    rl = {k: getattr(opts, k) for k in RESTORE_KEYS}
    try:
        device = resolve_device(ev.device)
    except ValueError as e:
        raise UserError(f"--device: {e}") from None
    return Settings(ev.benchmark, proto.metric, Path(ev.out_dir), device, gamma, opts.saturation,
                    rl, r.scale, r.max_megapixels, estimate_options(r, rl), ev,
                    r.denoise_above, r.jpeg_smooth if ev.jpeg else None)


def _signature(cfg: DictConfig) -> dict[str, Any]:
    """What a resumed run must share with the results already in the folder."""
    ev = as_config(cfg.eval)
    sig = {k: getattr(ev, k) for k in SIGNATURE_KEYS}
    sig["root"] = str(Path(ev.root).resolve()) if ev.root else None
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


# --------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No flags of its own (they are ``ALIASES``); the benchmarks in the help's epilog."""
    parser.epilog = (parser.epilog or "") + (
        " Benchmarks: realblur_j, realblur_r, koehler, gopro, synthetic, folder;"
        " conf/eval/<benchmark>.yaml holds each protocol's settings.")


def _items(s: Settings, root: str) -> list:
    """The benchmark's items under ``root`` (the first ``eval.limit`` of them)."""
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
    """Score every item not yet in results.csv, then write the summary and index.html."""
    from tqdm import tqdm

    from blurfield.evaluation import report

    s = _settings(cfg)
    ev = s.ev
    items = _items(s, ev.root)
    rows = _check_resume(s.out, _signature(cfg), ev.resume)
    wanted = {it.id for it in items}
    done = {r["id"] for r in rows if r.get("id") in wanted}  # other rows stay in the CSV
    todo = [it for it in items if it.id not in done]
    if ev.deblurrer:
        method: Method = Generator(ev.deblurrer, s.device)
    else:
        method = EstimateAndRestore(ev.checkpoint or cfg.restore.checkpoint, s.device)
    evaluate = (benchmark.evaluate_synthetic if s.benchmark == "synthetic"
                else benchmark.evaluate_photo)
    n_pics = len(items) if ev.pictures < 0 else ev.pictures
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
                                ev.picture_size)
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
        "gain over the blurry input": report.gains(rows),
        "no-harm rule": report.decisions(rows),
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
