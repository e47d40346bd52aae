"""`python -m data_prep gopro`: a small tree in the real GoPro layout -> has_field=false shards."""

from __future__ import annotations

import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from blurfield.data.schema import PAIR_MEMBERS, decode_sample
from blurfield.data.writer import MTIME
from data_prep.__main__ import main


def _png(path: Path, value: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(value).save(path)


def _tree(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """GOPRO_Large/{train,test}/<seq>/{blur,blur_gamma,sharp}/NNNNNN.png; returns the images
    by image_id and folder. One blurry frame of train has no sharp frame."""
    rng = np.random.default_rng(0)
    images: dict[str, dict[str, np.ndarray]] = {}
    layout = {"train": {"GOPR0372_07_00": 2, "GOPR0384_11_01": 1}, "test": {"GOPR0854_11_00": 1}}
    for split, seqs in layout.items():
        for seq, count in seqs.items():
            for i in range(count):
                name = f"{i + 1:06d}"
                imgs = {d: rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
                        for d in ("blur", "blur_gamma", "sharp")}
                for d, im in imgs.items():
                    _png(root / split / seq / d / f"{name}.png", im)
                images[f"{split}/{seq}/{name}"] = imgs
    orphan = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    _png(root / "train" / "GOPR0372_07_00" / "blur" / "000009.png", orphan)
    return images


def _read(path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            assert m.mtime == MTIME
            key, member = m.name.split(".", 1)
            samples[key][member] = tar.extractfile(m).read()
    return samples


def test_gopro_conversion_writes_pairs_in_the_schema(tmp_path, capsys):
    root, out = tmp_path / "GOPRO_Large", tmp_path / "shards"
    images = _tree(root)
    rc = main(["gopro", "--root", str(root), "--out", str(out), "--shard-size", "2", "-q"])
    assert rc == 0
    assert "1 skipped" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["test-000000.tar", "train-000000.tar", "train-000001.tar"]  # no .tmp left

    seen = {}
    for shard in sorted(out.glob("*.tar")):
        for key, members in _read(shard).items():
            assert sorted(members) == sorted(PAIR_MEMBERS)  # no kernels.npy / layers.png
            s = decode_sample({"__key__": key, **members})
            m = s.meta
            assert m["has_field"] is False and m["brightness"] == 1 and m["kernel_ids"] == []
            assert m["source"] == "gopro/blur" and m["gamma"] == 2.2
            assert key == m["image_id"].split("/", 1)[1].replace("/", "_")
            assert shard.name.startswith(m["image_id"].split("/")[0])
            seen[m["image_id"]] = s
    assert sorted(seen) == sorted(images)
    for image_id, s in seen.items():
        assert np.array_equal(s.blurry, images[image_id]["blur"])
        assert np.array_equal(s.sharp, images[image_id]["sharp"])

    # blur_gamma picks the other folder; fixed mtime makes reruns byte-identical
    out2, out3 = tmp_path / "g2", tmp_path / "g3"
    for o in (out2, out3):
        assert main(["gopro", "--root", str(root), "--out", str(o), "--blur", "blur_gamma",
                     "--splits", "test", "-q"]) == 0
    assert (out2 / "test-000000.tar").read_bytes() == (out3 / "test-000000.tar").read_bytes()
    (key, members), = _read(out2 / "test-000000.tar").items()
    s = decode_sample({"__key__": key, **members})
    assert np.array_equal(s.blurry, images["test/GOPR0854_11_00/000001"]["blur_gamma"])
    assert s.meta["source"] == "gopro/blur_gamma"


def test_gopro_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    rc = main(["gopro", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "no pairs" in err
    rc = main(["gopro", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "not a folder" in err


def test_gopro_takes_the_shard_keys_from_the_config(tmp_path, capsys):
    """--shard-size/--kernel-size/--gamma/--root are aliases of shards.* keys: key=value
    words and the flags give the same shards, and the defaults are the schema's."""
    from blurfield.config import ShardsCfg

    root = tmp_path / "GOPRO_Large"
    _tree(root)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert main(["gopro", "--root", str(root), "--out", str(a), "--shard-size", "2",
                 "--gamma", "2.4", "-q"]) == 0
    assert main(["gopro", f"shards.root={root}", "--out", str(b), "shards.shard_size=2",
                 "shards.gamma=2.4", "-q"]) == 0
    assert main(["gopro", "--root", str(root), "--out", str(c), "-q"]) == 0
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) == [
        "test-000000.tar", "train-000000.tar", "train-000001.tar"]
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    (key, members), *_ = _read(c / "train-000000.tar").items()
    meta = decode_sample({"__key__": key, **members}).meta
    assert (meta["kernel_size"], meta["gamma"]) == (ShardsCfg.kernel_size, ShardsCfg.gamma)
    assert sorted(p.name for p in c.iterdir()) == ["test-000000.tar", "train-000000.tar"]
    capsys.readouterr()
    assert main(["gopro", "--out", str(c), "-q"]) == 2
    assert "--root (shards.root) is required" in capsys.readouterr().err
    assert main(["gopro", "--root", str(root), "--out", str(c), "shards.shard_size=0"]) == 2
    assert "shards.shard_size=0" in capsys.readouterr().err
