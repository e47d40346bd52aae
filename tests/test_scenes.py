"""Scene sources: built-in dead leaves, both ADE20K layouts, a folder of images + masks.

The ADE20K trees are written here in the real encodings: full release ``*_seg.png`` with
class = R // 10 * 256 + G and instance in B, plus a fake ``index_ade20k.pkl``; challenge
annotation PNGs with semantic class indices.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from blurfield.config import ShardsCfg
from data_prep.scenes import SceneFilter, SceneSkip, make_source, order_instances
from data_prep.scenes.ade20k import find_layout
from data_prep.scenes.builtin import dead_leaves, paint_leaf


def shards_cfg(**kw):
    base = OmegaConf.structured(ShardsCfg)
    base.merge_with(dict(crop_size=32, kernel_size=9, **kw))
    return base


def write_jpg(path: Path, h: int, w: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, quality=95)


def full_seg(cls: np.ndarray, inst: np.ndarray) -> np.ndarray:
    """The full release's encoding: R = cls // 256 * 10, G = cls % 256, B = instance."""
    return np.stack([cls // 256 * 10, cls % 256, inst], -1).astype(np.uint8)


# --------------------------------------------------------------------------- helpers


def test_order_instances_largest_first_with_thresholds():
    lab = np.zeros((40, 40), np.int32)
    lab[0:10, 0:10] = 7  # 100 px
    lab[10:30, 0:20] = 3  # 400 px
    lab[30:35, 0:4] = 9  # 20 px: below the threshold
    lab[0:15, 20:40] = 5  # 300 px
    out = order_instances(lab, min_pixels=50, max_objects=2)
    assert out.dtype == np.uint8
    assert (out == 1).sum() == 400 and (out[10:30, 0:20] == 1).all()
    assert (out == 2).sum() == 300 and (out[0:15, 20:40] == 2).all()
    assert (out[0:10, 0:10] == 0).all() and (out[30:35, 0:4] == 0).all()  # dropped to bg
    big = np.full((4, 4), 1 << 22, np.int64)  # ids too large for bincount: the unique path
    assert (order_instances(big, 1, 3) == 1).all()


def test_paint_leaf_mask_is_exactly_the_painted_pixels():
    rng = np.random.default_rng(3)
    for _ in range(20):
        canvas = np.full((64, 64, 3), np.nan, np.float32)
        labels = np.zeros((64, 64), np.int32)
        paint_leaf(canvas, labels, 5, rng, *rng.uniform(0, 64, 2), rng.uniform(3, 30))
        painted = ~np.isnan(canvas).any(-1)
        assert np.array_equal(painted, labels == 5)


# --------------------------------------------------------------------------- builtin


def test_builtin_deterministic_ordered_and_exact():
    a_img, a_lay = dead_leaves(4, 11, size=128, max_objects=3, min_object_pixels=400)
    b_img, b_lay = dead_leaves(4, 11, size=128, max_objects=3, min_object_pixels=400)
    c_img, _ = dead_leaves(4, 12, size=128, max_objects=3, min_object_pixels=400)
    assert a_img.shape == (128, 128, 3) and a_img.dtype == np.uint8
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lay, b_lay)
    assert not np.array_equal(a_img, c_img)
    for i in range(6):
        _, lay = dead_leaves(1, i, size=128, max_objects=3, min_object_pixels=400)
        sizes = np.bincount(lay.ravel())[1:]
        assert len(sizes) <= 3 and (sizes >= 400).all()
        assert (np.diff(sizes) <= 0).all()  # largest first


def test_builtin_source_from_config():
    src = make_source(shards_cfg(scene_size=96, seed=2))
    s = src.scene(5)
    assert s.image_id == "builtin-s2-0000005" and s.image.shape == (96, 96, 3)
    with pytest.raises(ValueError, match="scene_size"):
        make_source(shards_cfg(scene_size=30))


# --------------------------------------------------------------------------- ADE20K full


def make_full_tree(root: Path, with_pkl: bool, person: int, car: int) -> Path:
    top = root / "ADE20K_2021_17_01"
    d = top / "images" / "ADE" / "training" / "urban" / "street"
    h, w = 60, 80
    # image 1: two people (B 5: 600 px, B 10: 450 px), a car (B 20: 500 px), a 40 px person
    cls = np.zeros((h, w), np.int64)
    inst = np.zeros((h, w), np.int64)
    cls[0:20, 0:30], inst[0:20, 0:30] = person, 5
    cls[30:45, 0:30], inst[30:45, 0:30] = person, 10
    cls[20:45, 40:60], inst[20:45, 40:60] = car, 20
    cls[50:55, 70:78], inst[50:55, 70:78] = person, 30
    cls[50:60, 0:40], inst[50:60, 0:40] = 2855, 40  # a tree: not an object layer
    write_jpg(d / "ADE_train_00000001.jpg", h, w)
    Image.fromarray(full_seg(cls, inst)).save(d / "ADE_train_00000001_seg.png")
    # image 2: only a small person -> skipped
    cls2 = np.zeros((h, w), np.int64)
    cls2[0:10, 0:10] = person
    write_jpg(d / "ADE_train_00000002.jpg", h, w, 1)
    Image.fromarray(full_seg(cls2, cls2 * 0 + 3)).save(d / "ADE_train_00000002_seg.png")
    # image 3 (validation): a car, but absent from the pkl's objectPresence
    v = top / "images" / "ADE" / "validation" / "x"
    cls3 = np.zeros((h, w), np.int64)
    cls3[0:30, 0:30] = car
    write_jpg(v / "ADE_val_00000003.jpg", h, w, 2)
    Image.fromarray(full_seg(cls3, cls3 * 0 + 9)).save(v / "ADE_val_00000003_seg.png")
    if with_pkl:
        names = [f"thing{i}, stuff" for i in range(120)]
        names[person - 1] = "person, individual, someone, somebody, mortal, soul"
        names[car - 1] = "car, auto, automobile, machine, motorcar"
        pres = np.zeros((120, 3), np.int64)
        pres[person - 1, 0] = pres[car - 1, 0] = pres[person - 1, 1] = 1
        idx = {"objectnames": names, "filename": ["ADE_train_00000001.jpg",
               "ADE_train_00000002.jpg", "ADE_val_00000003.jpg"], "objectPresence": pres}
        with open(top / "index_ade20k.pkl", "wb") as f:
            pickle.dump(idx, f)
    return top


def check_image1(scene):
    lay = scene.instances
    assert scene.image.shape == (60, 80, 3)
    assert (lay[0:20, 0:30] == 1).all()  # 600 px person
    assert (lay[20:45, 40:60] == 2).all()  # 500 px car
    assert (lay[30:45, 0:30] == 3).all()  # 450 px person, a separate instance
    assert (lay[50:55, 70:78] == 0).all() and (lay[50:60, 0:40] == 0).all()
    assert lay.max() == 3


def test_ade20k_full_with_index_pkl(tmp_path):
    # class ids found by name in the pkl (1-based positions), not the 1831/401 defaults
    make_full_tree(tmp_path, with_pkl=True, person=100, car=50)
    src = make_source(shards_cfg(source="ade20k", root=str(tmp_path), max_objects=5))
    assert src.layout == "full" and src.class_ids == [100, 50]
    ids = src.inputs()
    assert all("ADE_val_00000003" not in i for i in ids)  # prefiltered by objectPresence
    scenes = list(src)
    assert [s.image_id for s in scenes] == ["ade20k/ADE_train_00000001"]
    check_image1(scenes[0])
    assert src.skipped == [(ids[1], "no object instance >= min_object_pixels")]


def test_ade20k_full_without_pkl_uses_default_ids(tmp_path):
    top = make_full_tree(tmp_path, with_pkl=False, person=1831, car=401)
    src = make_source(shards_cfg(source="ade20k", root=str(top), subsets=["training",
                                                                          "validation"]))
    assert src.class_ids == [1831, 401]
    scenes = {s.image_id: s for s in src}
    assert set(scenes) == {"ade20k/ADE_train_00000001", "ade20k/ADE_val_00000003"}
    check_image1(scenes["ade20k/ADE_train_00000001"])
    assert (scenes["ade20k/ADE_val_00000003"].instances[0:30, 0:30] == 1).all()


# --------------------------------------------------------------------------- ADE20K 2016


def test_ade20k_challenge_components(tmp_path):
    top = tmp_path / "ADEChallengeData2016"
    h, w = 50, 60
    cls = np.zeros((h, w), np.uint8)
    cls[0:20, 0:20] = 13  # person A: 400 px
    cls[20:30, 20:30] = 13  # touches A diagonally only at (19,19)-(20,20): 8-connected
    cls[0:25, 40:60] = 21  # car: 500 px
    cls[40:50, 0:25] = 13  # person B: 250 px, below 400 -> background
    cls[40:50, 40:60] = 5  # another class
    write_jpg(top / "images" / "training" / "ADE_train_00000001.jpg", h, w)
    (top / "annotations" / "training").mkdir(parents=True)
    Image.fromarray(cls).save(top / "annotations" / "training" / "ADE_train_00000001.png")
    src = make_source(shards_cfg(source="ade20k", root=str(tmp_path), subsets=["training"]))
    assert src.layout == "challenge"
    (scene,) = list(src)
    lay = scene.instances
    assert (lay[0:20, 0:20] == 1).all() and (lay[20:30, 20:30] == 1).all()  # 500 px merged
    assert (lay[0:25, 40:60] == 2).all() and (lay[40:50] == 0).all() and lay.max() == 2


def test_ade20k_missing_root_shows_layouts(tmp_path):
    for root in (tmp_path / "nope", tmp_path):
        with pytest.raises(ValueError) as e:
            make_source(shards_cfg(source="ade20k", root=str(root)))
        msg = str(e.value)
        assert "images/ADE/training" in msg and "annotations/training" in msg
    with pytest.raises(ValueError, match="no root"):
        find_layout(None)


# --------------------------------------------------------------------------- folder


def test_folder_source_skips_bad_inputs(tmp_path):
    write_jpg(tmp_path / "a.jpg", 40, 50)
    m = np.zeros((40, 50), np.uint8)
    m[0:20, 0:25] = 2
    m[20:40, 0:50] = 1
    Image.fromarray(m).save(tmp_path / "a_mask.png")
    write_jpg(tmp_path / "sub" / "b.jpg", 40, 50)  # no objects: used with one layer
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "sub" / "b_mask.png")
    write_jpg(tmp_path / "c.jpg", 40, 50)
    Image.fromarray(np.zeros((30, 50), np.uint8)).save(tmp_path / "c_mask.png")  # wrong size
    (tmp_path / "d.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    Image.fromarray(m).save(tmp_path / "d_mask.png")
    write_jpg(tmp_path / "e.png", 40, 50)  # no mask
    write_jpg(tmp_path / "f.jpg", 20, 50)  # too small for crop 32 + K 9 - 1
    Image.fromarray(np.zeros((20, 50), np.uint8)).save(tmp_path / "f_mask.png")
    src = make_source(shards_cfg(source="folder", root=str(tmp_path), min_object_pixels=100))
    scenes = {s.image_id: s for s in src}
    assert set(scenes) == {"folder/a", "folder/sub/b"}
    a = scenes["folder/a"].instances
    assert (a[20:40] == 1).all() and (a[0:20, 0:25] == 2).all()  # 1000 px before 500 px
    assert scenes["folder/sub/b"].num_layers == 1
    reasons = dict(src.skipped)
    assert reasons == {"c.jpg": "mask size differs from image", "d.jpg": "unreadable image",
                       "e.png": "no mask file",
                       "f.jpg": "smaller than crop_size + kernel_size - 1"}


def test_max_side_resize_keeps_labels_aligned(tmp_path):
    write_jpg(tmp_path / "a.jpg", 100, 200)
    m = np.zeros((100, 200), np.uint8)
    m[:, :100] = 1
    Image.fromarray(m).save(tmp_path / "a_mask.png")
    src = make_source(shards_cfg(source="folder", root=str(tmp_path), max_side=100))
    (s,) = list(src)
    assert s.image.shape == (50, 100, 3)
    assert (s.instances[:, :50] == 1).all() and (s.instances[:, 50:] == 0).all()


def test_scene_filter_and_skip_reason():
    flt = SceneFilter(min_size=10, require_object=True)
    from data_prep.scenes import finish_scene

    with pytest.raises(SceneSkip) as e:
        finish_scene("x", np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.int32), flt)
    assert e.value.reason == "no object instance >= min_object_pixels"


def test_bundled_photos_read_directly_equal_skimage_data():
    import skimage.data

    from data_prep.scenes.builtin import COLOUR_PHOTOS, GREY_PHOTOS, load_photo

    for name in ("chelsea", "camera"):
        assert np.array_equal(load_photo(name), getattr(skimage.data, name)())
    assert "clock" not in GREY_PHOTOS and len(COLOUR_PHOTOS) == 7  # clock is motion-blurred
