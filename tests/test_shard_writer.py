"""The one shard writer (blurfield.data.writer) and the atomic file under it (blurfield.fileio):
reproducible bytes with pinned tar headers, the same bytes as the hand-rolled writer that made
the earlier shards, read back by the DataModule, atomic on success and failure."""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from helpers import fake_shards as fs

from blurfield.data.schema import decode_sample, encode_sample
from blurfield.data.writer import MODE, MTIME, ShardWriter, write_shard
from blurfield.fileio import AtomicFile, temp_files, write_bytes_atomic

K = 9


@pytest.fixture(scope="module")
def encoded() -> list[dict]:
    """Three encoded samples: two with a field (1 and 3 layers), one blurry/sharp pair."""
    a, _ = fs.make_sample("s-0", 1, size=48, kernel_size=K, n_objects=0)
    b, _ = fs.make_sample("s-1", 2, size=48, kernel_size=K, n_objects=2)
    c, _ = fs.make_sample("s-2", 3, size=48, kernel_size=K, has_field=False)
    return [encode_sample(s) for s in (a, b, c)]


def hand_rolled(samples: list[dict]) -> bytes:
    """The tar the earlier writer (data_prep/shards.py's TarShard) made of these samples:
    plain tarfile, USTAR, members sorted, mtime MTIME, mode 0644, uid/gid 0, no names."""
    buf = io.BytesIO()
    with tarfile.TarFile(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for s in samples:
            for member in sorted(k for k in s if not k.startswith("__")):
                info = tarfile.TarInfo(f"{s['__key__']}.{member}")
                info.size, info.mtime, info.mode = len(s[member]), 946684800, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(s[member]))
    return buf.getvalue()


def headers(data: bytes) -> list[bytes]:
    """The 512-byte member headers of an uncompressed tar, in order."""
    out, pos = [], 0
    while pos + 512 <= len(data) and data[pos : pos + 512] != bytes(512):
        h = data[pos : pos + 512]
        out.append(h)
        size = int(h[124:136].rstrip(b"\0 ") or b"0", 8)
        pos += 512 + (size + 511) // 512 * 512
    return out


def test_same_samples_give_the_same_bytes_as_before(encoded, tmp_path):
    a, b = tmp_path / "a" / "x-000000.tar", tmp_path / "b" / "x-000000.tar"
    assert write_shard(a, encoded) == 3
    with ShardWriter(b) as w:
        for s in encoded:
            w.write(s)
    assert a.read_bytes() == b.read_bytes() == hand_rolled(encoded)
    assert len(a.read_bytes()) % 10240 == 0  # padded to whole tar records


def test_tar_headers_are_pinned(encoded, tmp_path):
    path = tmp_path / "x.tar"
    write_shard(path, encoded)
    hs = headers(path.read_bytes())
    names = [h[:100].rstrip(b"\0").decode() for h in hs]
    assert names == ["s-0.blurry.png", "s-0.kernels.npy", "s-0.layers.png", "s-0.meta.json",
                     "s-0.sharp.png", "s-1.blurry.png", "s-1.kernels.npy", "s-1.layers.png",
                     "s-1.meta.json", "s-1.sharp.png", "s-2.blurry.png", "s-2.meta.json",
                     "s-2.sharp.png"]
    assert (MTIME, MODE) == (946684800, 0o644)
    for h in hs:
        assert h[100:108] == b"0000644\0"  # mode
        assert h[108:116] == h[116:124] == b"0000000\0"  # uid, gid
        assert h[136:148] == b"%011o\0" % MTIME  # mtime
        assert h[156:157] == b"0"  # a regular file: no PAX or GNU extension headers
        assert h[257:265] == b"ustar\x0000"  # USTAR magic and version
        assert h[265:297] == h[297:329] == bytes(32)  # uname, gname empty


def test_shard_is_read_back_by_the_datamodule(encoded, tmp_path):
    from blurfield.config import DataCfg
    from blurfield.data import BlurDataModule, count_samples

    path = tmp_path / "val-000000.tar"
    write_shard(path, encoded)
    assert count_samples([str(path)]) == 3
    cfg = DataCfg(train_shards=str(path), val_shards=str(path), samples_per_epoch=3,
                  val_samples=3, batch_size=3, workers=0, crop_size=24, shuffle_buffer=1,
                  require_field=False)
    (batch,) = list(BlurDataModule(cfg, K).val_dataloader())
    assert batch["blurry"].shape == (3, 3, 24, 24)
    assert batch["has_field"].tolist() == [True, True, False]
    assert batch["layer_valid"].sum(1).tolist() == [1, 3, 0]

    import webdataset as wds

    raw = list(wds.WebDataset(str(path), shardshuffle=False))
    got = [decode_sample(r) for r in raw]
    want = [decode_sample(s) for s in encoded]
    assert [s.key for s in got] == ["s-0", "s-1", "s-2"]
    for g, w in zip(got, want, strict=True):
        assert (g.blurry == w.blurry).all() and g.meta == w.meta


def test_a_failed_write_leaves_no_shard_and_no_temp_file(encoded, tmp_path):
    path = tmp_path / "x.tar"

    def failing():
        yield encoded[0]
        raise RuntimeError("scene broke")

    with pytest.raises(RuntimeError, match="scene broke"):
        write_shard(path, failing())
    assert list(tmp_path.iterdir()) == []
    path.write_bytes(b"the old shard")
    with pytest.raises(ValueError, match="__key__"):
        write_shard(path, [{"blurry.png": b"no key"}])
    assert path.read_bytes() == b"the old shard" and list(tmp_path.iterdir()) == [path]


def test_an_open_shard_is_a_hidden_temp_file_until_closed(encoded, tmp_path):
    path = tmp_path / "x.tar"
    w = ShardWriter(path)
    w.write(encoded[0])
    assert not path.exists() and [p.name[:7] for p in temp_files(path)] == [".x.tar."]
    w.close()
    assert path.exists() and temp_files(path) == []
    w = ShardWriter(path)
    w.abort()
    assert temp_files(path) == [] and path.read_bytes() == hand_rolled(encoded[:1])


def test_atomic_file_has_the_mode_open_would_give(tmp_path):
    mask = os.umask(0o027)
    try:
        write_bytes_atomic(tmp_path / "a.json", b"{}")
        with AtomicFile(tmp_path / "b.bin") as f:
            f.file.write(b"x")
    finally:
        os.umask(mask)
    for name in ("a.json", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640
    (tmp_path / ".c.tar.tmp").write_bytes(b"")  # the earlier writers' fixed temp name
    (tmp_path / ".c.tar.k3j_x9.tmp").write_bytes(b"")
    (tmp_path / ".c.tar.json").write_bytes(b"")
    assert [p.name for p in temp_files(tmp_path / "c.tar")] == [".c.tar.k3j_x9.tmp",
                                                                ".c.tar.tmp"]

