"""Benchmark readers on tiny trees laid out like the published datasets."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blurfield.data.schema import Sample, decode_sample, encode_sample, make_meta
from blurfield.evaluation import readers


def _png(path: Path, value: int = 0, size: tuple[int, int] = (6, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


# --------------------------------------------------------------------------- RealBlur


def _realblur_tree(root: Path, variant: str = "J") -> Path:
    folder = {"J": "RealBlur-J_ECC_IMCORR_centroid_itensity_ref",
              "R": "RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref"}[variant]
    lines = []
    for scene, idx in [("scene230", 7), ("scene230", 12), ("scene044", 1)]:
        gt = f"{folder}/{scene}/gt/gt_{idx}.png"
        bl = f"{folder}/{scene}/blur/blur_{idx}.png"
        _png(root / gt), _png(root / bl, 9)
        lines.append(f"{gt} {bl}")
    _png(root / folder / "scene999" / "blur" / "blur_1.png")  # a training pair: not listed
    (root / f"RealBlur_{variant}_test_list.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("variant", ["J", "R"])
def test_realblur_reads_the_test_list(tmp_path, variant):
    root = _realblur_tree(tmp_path, variant)
    items = readers.read_benchmark(f"realblur_{variant.lower()}", root)
    assert [it.id for it in items] == ["scene230_7", "scene230_12", "scene044_1"]
    it = items[0]
    assert it.blurry.name == "blur_7.png" and it.blurry.parent.name == "blur"
    assert it.sharp[0].name == "gt_7.png" and it.blurry.parent.parent == it.sharp[0].parent.parent


def test_realblur_tolerates_swapped_columns_and_lists_elsewhere(tmp_path):
    root = _realblur_tree(tmp_path / "data")
    lst = root / "RealBlur_J_test_list.txt"
    swapped = [" ".join(reversed(line.split())) for line in lst.read_text().splitlines()]
    (root / "datalist").mkdir()
    (root / "datalist" / lst.name).write_text("\n".join(swapped))
    lst.unlink()
    items = readers.read_benchmark("realblur_j", root)
    assert items[0].sharp[0].name == "gt_7.png" and items[0].blurry.name == "blur_7.png"


def test_realblur_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="RealBlur_J_test_list.txt"):
        readers.read_benchmark("realblur_j", tmp_path)
    root = _realblur_tree(tmp_path / "r")
    next(root.rglob("gt_12.png")).unlink()
    with pytest.raises(ValueError, match="1 files it names are missing.*gt_12.png"):
        readers.read_benchmark("realblur_j", root)


# --------------------------------------------------------------------------- Köhler


def _koehler_tree(root: Path, frames: int = 3) -> Path:
    for i, j in [(1, 1), (1, 2), (4, 12)]:
        _png(root / "BlurryImages" / f"Blurry{i}_{j}.png")
        for f in [1, 2, 10][:frames]:
            _png(root / f"GroundTruth_pngs_Image{i}" / f"Image{i}" / f"Kernel{j}"
                 / f"GroundTruth{i}_{j}_{f}.png", f)
    return root


def test_koehler_groups_frames_numerically(tmp_path):
    root = _koehler_tree(tmp_path)
    _png(root / "BlurryImages" / "Blurry1_1.jpg")  # a jpg copy: the png wins
    items = readers.read_benchmark("koehler", root)
    assert [it.id for it in items] == ["1_1", "1_2", "4_12"]
    assert items[0].blurry.suffix == ".png"
    assert [p.stem for p in items[2].sharp] == [f"GroundTruth4_12_{f}" for f in (1, 2, 10)]
    step = readers.read_benchmark("koehler", root, frame_step=2)
    assert [p.stem for p in step[2].sharp] == ["GroundTruth4_12_1", "GroundTruth4_12_10"]


def test_koehler_is_case_tolerant_and_flat(tmp_path):
    _png(tmp_path / "blurry2_3.PNG")
    _png(tmp_path / "groundtruth2_3_5.png")
    items = readers.read_benchmark("koehler", tmp_path)
    assert items[0].id == "2_3" and len(items[0].sharp) == 1


def test_koehler_errors(tmp_path):
    with pytest.raises(ValueError, match="BlurryImages.zip"):
        readers.read_benchmark("koehler", tmp_path)
    root = _koehler_tree(tmp_path / "k")
    _png(root / "Blurry3_5.png")
    with pytest.raises(ValueError, match="Blurry3_5.*GroundTruth_pngs_Image3.zip"):
        readers.read_benchmark("koehler", root)


# --------------------------------------------------------------------------- GoPro


def _gopro_tree(root: Path) -> Path:
    test = root / "GOPRO_Large" / "test"
    for seq in ["GOPR0384_11_00", "GOPR0410_11_00"]:
        for n in ["000001", "000002"]:
            for sub in ["blur", "blur_gamma", "sharp"]:
                _png(test / seq / sub / f"{n}.png")
    _png(root / "GOPRO_Large" / "train" / "GOPR0372_07_00" / "blur" / "000047.png")
    return root


@pytest.mark.parametrize("level", ["", "GOPRO_Large", "GOPRO_Large/test"])
def test_gopro_pairs_from_any_level(tmp_path, level):
    root = _gopro_tree(tmp_path)
    items = readers.read_benchmark("gopro", root / level)
    assert [it.id for it in items] == ["GOPR0384_11_00_000001", "GOPR0384_11_00_000002",
                                       "GOPR0410_11_00_000001", "GOPR0410_11_00_000002"]
    assert items[0].blurry.parent.name == "blur" and items[0].sharp[0].parent.name == "sharp"
    gamma = readers.read_benchmark("gopro", root, blur_dir="blur_gamma")
    assert gamma[0].blurry.parent.name == "blur_gamma"


def test_gopro_errors(tmp_path):
    with pytest.raises(ValueError, match="GOPRO_Large"):
        readers.read_benchmark("gopro", tmp_path)
    root = _gopro_tree(tmp_path / "g")
    next(root.rglob("GOPR0410_11_00/sharp/000002.png")).unlink()
    with pytest.raises(ValueError, match="no sharp frame"):
        readers.read_benchmark("gopro", root)


# --------------------------------------------------------------------------- folder


def test_folder_lists_images_recursively(tmp_path):
    _png(tmp_path / "boat1.jpg")
    _png(tmp_path / "night" / "street.png")
    (tmp_path / "notes.txt").write_text("x")
    _png(tmp_path / "out" / "boat1_restored.png")
    items = readers.read_benchmark("folder", tmp_path, exclude=tmp_path / "out")
    assert [it.id for it in items] == ["boat1", "night__street"]
    assert all(not it.sharp for it in items)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        readers.read_benchmark("folder", tmp_path / "empty")


# --------------------------------------------------------------------------- synthetic


def _sample(key: str, seed: int) -> Sample:
    rng = np.random.default_rng(seed)
    sharp = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    kernels = rng.random((2, 5, 5)).astype(np.float32)
    kernels /= kernels.sum((1, 2), keepdims=True)
    layers = np.zeros((40, 40), np.uint8)
    layers[10:20, 10:30] = 1
    meta = make_meta(has_field=True, brightness=1.0, gamma=2.2, kernel_size=5,
                     normalize_masks=True, noise=None, seed=seed, kernel_ids=[0, 1],
                     image_id=key, source="test")
    return Sample(key, sharp, sharp.copy(), meta, kernels, layers)


def _write_shard(path: Path, samples: list[Sample]) -> Path:
    with tarfile.open(path, "w") as tf:
        for s in samples:
            enc = encode_sample(s)
            for member, data in enc.items():
                if member.startswith("__"):
                    continue
                info = tarfile.TarInfo(f"{s.key}.{member}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def test_synthetic_reads_shards_back(tmp_path):
    a = [_sample("000000", 0), _sample("000001", 1)]
    _write_shard(tmp_path / "val-000000.tar", a)
    _write_shard(tmp_path / "val-000001.tar", [_sample("000002", 2)])
    for root in [tmp_path, tmp_path / "val-{000000..000001}.tar", str(tmp_path / "val-*.tar")]:
        items = readers.read_benchmark("synthetic", root)
        assert [it.id for it in items] == ["000000", "000001", "000002"]
    only = readers.read_benchmark("synthetic", tmp_path / "val-000000.tar")
    s = decode_sample(readers.load_raw_sample(only[1]))
    assert s.key == "000001" and s.has_field
    np.testing.assert_array_equal(s.sharp, a[1].sharp)
    np.testing.assert_array_equal(s.kernels, a[1].kernels)
    np.testing.assert_array_equal(s.layers, a[1].layers)


def test_synthetic_disambiguates_repeated_keys(tmp_path):
    _write_shard(tmp_path / "a.tar", [_sample("000000", 0)])
    _write_shard(tmp_path / "b.tar", [_sample("000000", 1)])
    items = readers.read_benchmark("synthetic", tmp_path)
    assert [it.id for it in items] == ["a__000000", "b__000000"]


def test_synthetic_errors(tmp_path):
    with pytest.raises(ValueError, match="no .tar shards"):
        readers.read_benchmark("synthetic", tmp_path)


def test_unknown_benchmark(tmp_path):
    with pytest.raises(ValueError, match="not one of"):
        readers.read_benchmark("levin", tmp_path)
