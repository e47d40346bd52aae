"""Benchmark readers: each turns a dataset folder, in its published layout, into items.

An :class:`Item` names one blurry photo, its ground truth (none, one image, or Köhler's
recorded sharp frames) and an ``id`` that is unique in the set and safe as a file stem.
Readers only list files (no pixels are read) and raise ``ValueError`` with what to put
where when the layout is not found.

Layouts (checked against the published archives' names):

- RealBlur (Rim et al. 2020): ``ROOT/RealBlur_J_test_list.txt`` (or ``_R_``), each line
  ``GT_PATH BLUR_PATH`` relative to ROOT, e.g.
  ``RealBlur-J_ECC_IMCORR_centroid_itensity_ref/scene230/gt/gt_7.png`` and ``.../blur/blur_7.png``
  (RealBlur-R: ``RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref/...``). id ``scene230_7``.
- Köhler et al. 2012: ``Blurry{i}_{j}.png`` (i = image 1..4, j = kernel 1..12) and the sharp
  frames ``GroundTruth{i}_{j}_{frame}.png`` (archives ``GroundTruth_pngs_Image{i}.zip``,
  folders ``Image{i}/Kernel{j}/``), found anywhere under ROOT, any of png/jpg/tif, any case.
  id ``{i}_{j}``.
- GoPro (Nah et al. 2017): ``GOPRO_Large/test/<sequence>/{blur,sharp}/<frame>.png``; ROOT
  may be ``GOPRO_Large``, its ``test`` folder, or a folder holding ``GOPRO_Large``.
  id ``<sequence>_<frame>``.
- folder: every image under ROOT (Lai et al.'s real photos; no ground truth). id = the
  relative path without extension, ``/`` replaced by ``__``.
- synthetic: webdataset shards (``.tar``) in the schema of :mod:`blurfield.data.schema`;
  ROOT is a shard, a folder of shards, or a glob. id = the sample key.
"""

from __future__ import annotations

import glob
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
BENCHMARKS = ("realblur_j", "realblur_r", "koehler", "gopro", "synthetic", "folder")


@dataclass
class Item:
    """One photo to evaluate. ``sharp`` holds 0, 1 or (Köhler) many ground-truth frames;
    ``shard``/``members`` locate a synthetic sample inside its tar."""

    id: str
    blurry: Path | None = None
    sharp: tuple[Path, ...] = ()
    shard: Path | None = None
    members: dict[str, tarfile.TarInfo] = field(default_factory=dict)


def read_benchmark(name: str, root: str | Path, **options: Any) -> list[Item]:
    """The items of benchmark ``name`` under ``root`` (options go to its reader)."""
    readers = {
        "realblur_j": lambda r, **o: realblur(r, "J", **o),
        "realblur_r": lambda r, **o: realblur(r, "R", **o),
        "koehler": koehler,
        "gopro": gopro,
        "folder": folder,
        "synthetic": synthetic,
    }
    if name not in readers:
        raise ValueError(f"benchmark '{name}' is not one of {', '.join(BENCHMARKS)}")
    if name != "synthetic" and not Path(root).is_dir():
        raise ValueError(f"--root {root}: not a folder (point it at the {name} dataset)")
    items = readers[name](Path(root) if name != "synthetic" else root, **options)
    ids = [it.id for it in items]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"{root}: {len(dup)} items share an id (first: '{dup[0]}')")
    return items


# --------------------------------------------------------------------------- RealBlur


def _find_list(root: Path, name: str) -> Path | None:
    for c in (root / name, root / "datalist" / name, root.parent / name):
        if c.is_file():
            return c
    hits = sorted(root.rglob(name))
    return hits[0] if hits else None


def _resolve(rel: str, bases: Iterable[Path]) -> Path | None:
    parts = Path(rel).parts
    for base in bases:
        # The path as written, then with leading folders dropped (lists made elsewhere).
        for k in range(len(parts)):
            p = base.joinpath(*parts[k:])
            if p.is_file():
                return p
    return None


def realblur(root: Path, variant: str = "J", split: str = "test",
             list_file: str | None = None) -> list[Item]:
    """RealBlur-J or -R pairs named by ``RealBlur_{variant}_{split}_list.txt``."""
    name = f"RealBlur_{variant}_{split}_list.txt"
    lst = Path(list_file) if list_file else _find_list(root, name)
    if lst is None or not lst.is_file():
        raise ValueError(f"--root {root}: no {name} there; put the RealBlur archive's list "
                         f"files beside its RealBlur-{variant}_* folder (or set "
                         "eval.list_file)")
    items, missing = [], []
    for n, line in enumerate(lst.read_text().splitlines(), 1):
        words = line.split()
        if not words:
            continue
        if len(words) < 2:
            raise ValueError(f"{lst}:{n}: expected 'GT_PATH BLUR_PATH', got '{line.strip()}'")
        gt, bl = words[0], words[1]
        if "/blur/" in gt or Path(gt).name.startswith("blur_"):
            gt, bl = bl, gt  # tolerate swapped columns
        g, b = _resolve(gt, (lst.parent, root)), _resolve(bl, (lst.parent, root))
        if g is None or b is None:
            missing.append(gt if g is None else bl)
            continue
        scene = b.parent.parent.name
        stem = re.sub(r"^blur_", "", b.stem)
        items.append(Item(f"{scene}_{stem}", blurry=b, sharp=(g,)))
    if missing:
        raise ValueError(f"{lst}: {len(missing)} files it names are missing under {root} "
                         f"(first: {missing[0]}); extract the whole RealBlur archive there")
    if not items:
        raise ValueError(f"{lst}: lists no image pairs")
    return items


# --------------------------------------------------------------------------- Köhler

_BLURRY = re.compile(r"^blurry(\d+)_(\d+)$", re.IGNORECASE)
_FRAME = re.compile(r"^groundtruth(\d+)_(\d+)_(\d+)$", re.IGNORECASE)


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def _prefer_png(a: Path | None, b: Path) -> Path:
    if a is None:
        return b
    return b if b.suffix.lower() == ".png" and a.suffix.lower() != ".png" else a


def koehler(root: Path, frame_step: int = 1) -> list[Item]:
    """Köhler's 48 blurry photos with their recorded sharp frames (every ``frame_step``-th)."""
    blurry: dict[tuple[int, int], Path] = {}
    frames: dict[tuple[int, int], dict[int, Path]] = {}
    for p in _images(root):
        if m := _BLURRY.match(p.stem):
            k = (int(m[1]), int(m[2]))
            blurry[k] = _prefer_png(blurry.get(k), p)
        elif m := _FRAME.match(p.stem):
            k = (int(m[1]), int(m[2]))
            f = frames.setdefault(k, {})
            f[int(m[3])] = _prefer_png(f.get(int(m[3])), p)
    if not blurry:
        raise ValueError(f"--root {root}: no Blurry{{i}}_{{j}}.png found; extract Köhler's "
                         "BlurryImages.zip and GroundTruth_pngs_Image{1..4}.zip there")
    no_gt = sorted(k for k in blurry if k not in frames)
    if len(no_gt) == len(blurry):
        raise ValueError(f"--root {root}: no GroundTruth{{i}}_{{j}}_{{frame}}.png found; "
                         "extract GroundTruth_pngs_Image{1..4}.zip there")
    if no_gt:
        raise ValueError(f"--root {root}: no ground-truth frames for {len(no_gt)} blurry photos "
                         f"(first: Blurry{no_gt[0][0]}_{no_gt[0][1]}); extract "
                         f"GroundTruth_pngs_Image{no_gt[0][0]}.zip there")
    step = max(1, int(frame_step))
    return [Item(f"{i}_{j}", blurry=blurry[(i, j)],
                 sharp=tuple(frames[(i, j)][f] for f in sorted(frames[(i, j)])[::step]))
            for i, j in sorted(blurry)]


# --------------------------------------------------------------------------- GoPro


def _gopro_split_dir(root: Path, split: str) -> Path | None:
    for c in (root, root / split, root / "GOPRO_Large" / split):
        if c.is_dir() and any((s / "blur").is_dir() and (s / "sharp").is_dir()
                              for s in c.iterdir() if s.is_dir()):
            return c
    return None


def gopro(root: Path, split: str = "test", blur_dir: str = "blur") -> list[Item]:
    """GoPro pairs ``<sequence>/{blur_dir,sharp}/<frame>.png`` of the ``split`` folder."""
    base = _gopro_split_dir(root, split)
    if base is None:
        raise ValueError(f"--root {root}: no GOPRO_Large/{split}/<sequence>/{{blur,sharp}}/ "
                         "found; point --root at GOPRO_Large (or its test folder)")
    items, missing = [], []
    for seq in sorted(s for s in base.iterdir() if (s / blur_dir).is_dir()):
        for b in sorted(p for p in (seq / blur_dir).iterdir() if p.suffix.lower() in IMAGE_EXTS):
            s = seq / "sharp" / b.name
            if not s.is_file():
                missing.append(s)
                continue
            items.append(Item(f"{seq.name}_{b.stem}", blurry=b, sharp=(s,)))
    if missing:
        raise ValueError(f"{base}: {len(missing)} blurry frames have no sharp frame of the "
                         f"same name (first: {missing[0]})")
    if not items:
        raise ValueError(f"{base}: no frames in <sequence>/{blur_dir}/")
    return items


# --------------------------------------------------------------------------- folder


def folder(root: Path, exclude: Path | None = None) -> list[Item]:
    """Every image under ``root`` (except under ``exclude``, e.g. the output folder)."""
    ex = exclude.resolve() if exclude else None
    paths = [p for p in _images(root) if ex is None or ex not in p.resolve().parents]
    if not paths:
        raise ValueError(f"--root {root}: no images ({', '.join(IMAGE_EXTS)}) found")
    return [Item("__".join(p.relative_to(root).with_suffix("").parts), blurry=p)
            for p in paths]


# --------------------------------------------------------------------------- synthetic


def shard_paths(root: str | Path) -> list[Path]:
    """Shards named by a file, a folder (its ``*.tar``), a glob or a ``{a..b}`` pattern."""
    r = str(root)
    if m := re.search(r"\{(\d+)\.\.(\d+)\}", r):
        width = len(m[1])
        names = [r[: m.start()] + str(i).zfill(width) + r[m.end():]
                 for i in range(int(m[1]), int(m[2]) + 1)]
        paths = [Path(n) for n in names if Path(n).is_file()]
    elif Path(r).is_dir():
        paths = sorted(Path(r).glob("*.tar"))
    else:
        paths = sorted(Path(p) for p in glob.glob(r)) if any(c in r for c in "*?[") else (
            [Path(r)] if Path(r).is_file() else [])
    if not paths:
        raise ValueError(f"--root {root}: no .tar shards found; point it at held-out shards "
                         "written by `python -m data_prep shards` (e.g. a val-*.tar)")
    return paths


def _split_name(name: str) -> tuple[str, str]:
    """webdataset's key/extension split: the key ends at the first dot of the file name."""
    d, _, base = name.rpartition("/")
    key, _, ext = base.partition(".")
    return (f"{d}/{key}" if d else key), ext


def synthetic(root: str | Path) -> list[Item]:
    """One item per sample (a key with a ``meta.json``) in the shards, in shard order."""
    items = []
    for shard in shard_paths(root):
        groups: dict[str, dict[str, tarfile.TarInfo]] = {}
        with tarfile.open(shard) as tf:
            for info in tf.getmembers():
                if info.isfile():
                    key, ext = _split_name(info.name)
                    groups.setdefault(key, {})[ext] = info
        for key, members in groups.items():
            if "meta.json" in members:
                items.append(Item(key.replace("/", "__"), shard=shard, members=members))
    ids = [it.id for it in items]
    for it in items:  # the same key in two shards: name the shard too
        if ids.count(it.id) > 1 and it.shard is not None:
            it.id = f"{it.shard.stem}__{it.id}"
    if not items:
        raise ValueError(f"--root {root}: the shards hold no samples with a meta.json")
    return items


def load_raw_sample(item: Item) -> dict[str, Any]:
    """The raw members (bytes) of a synthetic item, as webdataset would yield them."""
    if item.shard is None:
        raise ValueError(f"item {item.id} is not a shard sample")
    raw: dict[str, Any] = {"__key__": item.id}
    with tarfile.open(item.shard) as tf:
        for ext, info in item.members.items():
            f = tf.extractfile(info)
            if f is not None:
                raw[ext] = f.read()
    return raw
