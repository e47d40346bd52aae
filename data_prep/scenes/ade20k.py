"""ADE20K scenes: person and car instances as object layers (docs/design.md §2).

Two layouts (``shards.layout``: auto | full | challenge), ``shards.root`` pointing at the
folder shown (or at its parent)::

    ADE20K_2021_17_01/                  full release ("full")
      index_ade20k.pkl                  object index (optional, see below)
      images/ADE/training/<scene>/.../ADE_train_00000001.jpg
                                   .../ADE_train_00000001_seg.png
      images/ADE/validation/...

    ADEChallengeData2016/               challenge subset ("challenge")
      images/training/ADE_train_00000001.jpg
      annotations/training/ADE_train_00000001.png
      images/validation/...   annotations/validation/...

Full release: in ``*_seg.png`` the class of a pixel is ``R // 10 * 256 + G`` and its instance
is the B value (instances = the distinct B values within a class; B identifies one object
across classes, checked on the release's sample images). The class value is the **1-based**
position in ``index_ade20k.pkl``'s ``objectnames`` (0 = unlabelled): the release's starter
notebook masks ``class_mask == obj_id + 1`` for ``obj_id`` indexing ``objectnames``, and the
per-image JSON gives ``name_ndx`` 1831 for "person, individual, ..." and 401 for "car, auto,
..." with exactly those values in the seg PNG. The ids are looked up by name in the pkl
(first comma-separated word equal to the name) when it is readable, otherwise
``shards.ade_class_ids`` (default [1831, 401]); the pkl's ``objectPresence`` also skips,
without reading them, images that hold none of the classes.

Challenge subset: annotation PNGs hold semantic classes 1..150 with 0 = other; person = 13,
car = 21 (``shards.challenge_class_ids``). Instances are the 8-connected components
(``scipy.ndimage.label``) of each class: touching people merge into one layer.

Only images with at least one instance >= ``min_object_pixels`` are kept (the paper's 5,888).
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blurfield.config import AdeLayout

from . import FiniteSource, Scene, SceneFilter, SceneSkip, finish_scene, read_png_array, read_rgb

FULL_TREE = """ADE20K_2021_17_01/
  index_ade20k.pkl            (optional)
  images/ADE/training/<scene>/ADE_train_00000001.jpg
                             /ADE_train_00000001_seg.png
  images/ADE/validation/..."""
CHALLENGE_TREE = """ADEChallengeData2016/
  images/training/ADE_train_00000001.jpg
  annotations/training/ADE_train_00000001.png
  images/validation/...  annotations/validation/..."""


def layout_error(root: Any, why: str) -> ValueError:
    return ValueError(
        f"shards.root={root}: {why}. Expected one of these layouts (root = the top folder "
        f"or its parent):\n{FULL_TREE}\n{CHALLENGE_TREE}")


def find_layout(root: Any, layout: str | AdeLayout = AdeLayout.auto) -> tuple[str, Path]:
    """(layout, folder) for ``root`` (the dataset folder or its parent); ValueError with the
    expected trees if neither layout is there."""
    layout = AdeLayout.parse(layout, "shards.layout")
    if root is None:
        raise layout_error(root, "no root given (set shards.root=PATH)")
    r = Path(root).expanduser()
    if not r.is_dir():
        raise layout_error(root, "not a folder")
    for cand in (r, r / "ADE20K_2021_17_01", r / "ADEChallengeData2016"):
        if layout in ("auto", "full") and (cand / "images" / "ADE").is_dir():
            return "full", cand
        if layout in ("auto", "challenge") and (cand / "annotations").is_dir() \
                and (cand / "images").is_dir():
            return "challenge", cand
    raise layout_error(root, f"no {'ADE20K' if layout == AdeLayout.auto else layout} layout found")


def decode_full_seg(seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A full-release ``*_seg.png`` (H, W, 3) uint8 -> class (R // 10 * 256 + G) and instance
    (B) maps, int32."""
    r, g, b = (seg[..., c].astype(np.int32) for c in range(3))
    return r // 10 * 256 + g, b


def instances_full(seg: np.ndarray, class_ids: list[int]) -> np.ndarray:
    """Instance labels (H, W) int32: one label per (class in ``class_ids``, B value)."""
    cls, inst = decode_full_seg(seg)
    sel = np.isin(cls, class_ids)
    out = np.zeros(cls.shape, np.int32)
    if sel.any():
        _, lab = np.unique(cls[sel] * 256 + inst[sel], return_inverse=True)
        out[sel] = lab.ravel() + 1
    return out


def instances_challenge(classes: np.ndarray, class_ids: list[int]) -> np.ndarray:
    """Instance labels (H, W) int32: 8-connected components of each class in ``class_ids``."""
    from scipy import ndimage

    out = np.zeros(classes.shape, np.int32)
    n = 0
    for c in class_ids:
        lab, k = ndimage.label(classes == c, structure=np.ones((3, 3), bool))
        out[lab > 0] = lab[lab > 0] + n
        n += k
    return out


def read_index(path: Path, names: list[str]) -> tuple[list[int] | None, set[str] | None]:
    """From ``index_ade20k.pkl``: the 1-based class ids of ``names`` and the file names of
    images that contain any of them (``objectPresence``). (None, None) when unreadable."""
    try:
        with open(path, "rb") as f:
            idx = pickle.load(f)
        objectnames = [str(n) for n in idx["objectnames"]]
    except Exception as e:  # missing, another pickle protocol, pandas objects, ...
        print(f"ADE20K: {path} not readable ({type(e).__name__}); using shards.ade_class_ids",
              file=sys.stderr)
        return None, None
    ids = []
    for name in names:
        pos = [i for i, n in enumerate(objectnames) if n.split(",")[0].strip() == name]
        if not pos:
            raise ValueError(f"{path}: no object named {name!r} in objectnames "
                             "(check shards.ade_class_names)")
        ids.append(pos[0] + 1)  # seg class values are 1-based positions in objectnames
    files = None
    try:
        pres = np.asarray(idx["objectPresence"])
        has = pres[[i - 1 for i in ids]].sum(0) > 0
        files = {str(f) for f, h in zip(idx["filename"], has) if h}
    except Exception:
        files = None
    return ids, files


@dataclass
class Ade20kSource(FiniteSource):
    """ADE20K scenes (either layout); input ids are paths relative to the dataset folder."""

    folder: Path = Path(".")
    layout: str = "full"
    class_ids: list[int] = field(default_factory=lambda: [1831, 401])
    subsets: list[str] = field(default_factory=lambda: ["training", "validation"])
    present: set[str] | None = None  # full: files with a person/car per the pkl (None = all)

    def inputs(self) -> list[str]:
        out = []
        for sub in self.subsets:
            if self.layout == "full":
                d = self.folder / "images" / "ADE" / sub
                files = [p for p in d.rglob("*.jpg")
                         if self.present is None or p.name in self.present]
            else:
                files = list((self.folder / "images" / sub).glob("*.jpg"))
            out += [str(p.relative_to(self.folder)) for p in files]
        if not out:
            raise layout_error(self.folder, f"no .jpg images under the {self.layout} layout "
                                            f"for subsets {list(self.subsets)}")
        return sorted(out)

    def image_id(self, rel: str) -> str:
        return f"ade20k/{Path(rel).stem}"

    def mask_path(self, rel: str) -> Path:
        p = self.folder / rel
        if self.layout == "full":
            return p.with_name(p.stem + "_seg.png")
        parts = Path(rel).parts  # images/<subset>/<name>.jpg
        return self.folder / "annotations" / Path(*parts[1:]).with_suffix(".png")

    def load(self, input_id: str) -> Scene:
        iid = self.image_id(input_id)
        mp = self.mask_path(input_id)
        if not mp.is_file():
            raise SceneSkip("no annotation file", f"{iid}: {mp} missing")
        mask = read_png_array(mp, iid, "annotation")
        if self.layout == "full":
            if mask.ndim != 3 or mask.shape[-1] < 3:
                raise SceneSkip("annotation is not an RGB _seg.png", iid)
            labels = instances_full(mask[..., :3], self.class_ids)
        else:
            if mask.ndim != 2:
                raise SceneSkip("annotation is not a single-channel class PNG", iid)
            labels = instances_challenge(mask, self.class_ids)
        if labels.max() == 0:  # cheap early exit before decoding the photo
            raise SceneSkip("no object instance >= min_object_pixels", iid)
        image = read_rgb(self.folder / input_id, iid)
        return finish_scene(iid, image, labels, self.flt)


def make_ade20k(sc: Any) -> Ade20kSource:
    """The ADE20K source of the ``shards`` config section (ValueError on a bad root)."""
    layout, folder = find_layout(sc.root, sc.layout)
    flt = SceneFilter.from_cfg(sc, require_object=True)
    subsets = [str(s) for s in sc.subsets]
    if layout == "challenge":
        return Ade20kSource(flt, folder=folder, layout=layout,
                            class_ids=[int(c) for c in sc.challenge_class_ids], subsets=subsets)
    pkl = Path(sc.ade_index) if sc.ade_index else folder / "index_ade20k.pkl"
    ids, present = (None, None)
    if pkl.is_file():
        ids, present = read_index(pkl, [str(n) for n in sc.ade_class_names])
    elif sc.ade_index:
        raise ValueError(f"shards.ade_index={sc.ade_index}: no such file")
    return Ade20kSource(flt, folder=folder, layout=layout,
                        class_ids=ids or [int(c) for c in sc.ade_class_ids], subsets=subsets,
                        present=present)
