"""The shard writer: layout, split, determinism, kill-and-resume, bad inputs, kernel banks,
and the docs/design.md §8 invariant on a written sample. Small scenes (96 px, K = 9, crop 64)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from blurfield.config import load_config
from blurfield.data.schema import decode_sample, gt_field, sharp_linear
from blurfield.physics import reblur
from data_prep.shards import MTIME, build, split_of

REPO = Path(__file__).resolve().parent.parent
SMALL = ["shards.scene_size=96", "shards.kernel_size=9", "shards.crop_size=64",
         "shards.num_samples=40", "shards.shard_size=4", "shards.val_fraction=0.25",
         "shards.workers=0", "shards.progress=false", "kernels.count=50", "kernels.fit=shrink"]


def small_cfg(out: Path, *extra: str):
    return load_config(None, SMALL + [f"shards.out_dir={out}", *extra])


def read_shard(path: Path) -> list:
    """Samples of one tar, decoded, in order (grouped by key prefix)."""
    groups: dict[str, dict] = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            assert m.mtime == MTIME
            key, member = m.name.split(".", 1)
            groups.setdefault(key, {"__key__": key})[member] = tf.extractfile(m).read()
    return [decode_sample(raw) for raw in groups.values()]


def tar_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref")
    build(small_cfg(out), progress=False)
    return out


def test_layout_split_and_counts(ref):
    m = json.loads((ref / "manifest.json").read_text())
    assert m["counts"]["total"] == 40 and m["counts"]["failed"] == 0
    assert m["schema_version"] == 1 and m["config"]["num_samples"] == 40
    keys = []
    for row in m["shards"]:
        samples = read_shard(ref / row["name"])
        assert len(samples) == row["samples"] <= 4
        for s in samples:
            assert split_of(s.meta["image_id"], 0.25) == row["split"]
            keys.append(s.key)
    assert sorted(keys) == [f"{i:08d}" for i in range(40)]  # each sample exactly once
    n = {s: m["counts"][s] for s in ("train", "val")}
    assert 0 < n["val"] < n["train"]
    names = sorted(p.name for p in ref.glob("*.tar"))
    assert names == sorted([f"train-{i:06d}.tar" for i in range((n["train"] + 3) // 4)]
                           + [f"val-{i:06d}.tar" for i in range((n["val"] + 3) // 4)])
    assert not list(ref.glob(".*.tmp"))


def test_resume_after_simulated_crash_is_byte_identical(ref, tmp_path):
    out = tmp_path / "crash"
    shutil.copytree(ref, out)
    (out / "train-000001.tar").unlink()
    (out / "val-000000.tar").unlink()
    (out / "manifest.json").unlink()
    (out / ".train-000001.tar.tmp").write_bytes(b"half a shard")  # an earlier writer's name
    (out / ".val-000000.tar.x1y2z3.tmp").write_bytes(b"half a shard")  # ShardWriter's
    before = {n: (out / n).stat().st_mtime_ns for n in ("train-000000.tar", "train-000002.tar")}
    build(small_cfg(out), progress=False)
    assert tar_bytes(out) == tar_bytes(ref)
    assert not list(out.glob(".*.tmp"))
    for n, t in before.items():  # complete shards were kept, not rewritten
        assert (out / n).stat().st_mtime_ns == t


def test_kill_and_resume_subprocess(ref, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "data_prep", "shards", "--quiet", *SMALL,
           f"shards.out_dir={out}", "shards.workers=1"]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*.tar")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard after 120 s"
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its worker process
        proc.wait()
    assert not (out / "manifest.json").exists()  # killed before the end
    assert len(list(out.glob("*.tar"))) < len(tar_bytes(ref))
    build(small_cfg(out), progress=False)  # workers=0 here: the bytes do not depend on it
    assert tar_bytes(out) == tar_bytes(ref)


def test_refuses_another_config_in_the_same_folder(ref, tmp_path):
    out = tmp_path / "other"
    shutil.copytree(ref, out)
    with pytest.raises(ValueError, match="shards.seed"):
        build(small_cfg(out, "shards.seed=1"), progress=False)


def test_written_sample_satisfies_the_reblur_invariant(ref):
    (s, *_) = read_shard(ref / "train-000000.tar")
    window = (10, 20, 64, 64)  # at least K // 2 = 4 from every border of the 96 x 96 scene
    gt = gt_field(s, window)
    st, sl, sh, sw = gt.sharp_window
    u = sharp_linear(s)[:, st : st + sh, sl : sl + sw]
    v = reblur(u[None], gt.kernels[None], gt.masks[None], gamma=s.meta["gamma"],
               padding="valid")[0]
    blurry = torch.from_numpy(np.array(s.blurry[10:74, 20:84])).permute(2, 0, 1).float()
    unclipped = blurry < 230  # R(x) differs from a hard clip only near 1
    assert unclipped.float().mean() > 0.5
    err = (v * 255 - blurry).abs()[unclipped]
    assert err.max() <= 1.5  # 1/255 + half a quantisation step


def test_folder_source_counts_corrupt_inputs(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        img = rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / f"{name}.png")
        m = np.zeros((80, 90), np.uint8)
        m[20:50, 20:60] = 1
        Image.fromarray(m).save(root / f"{name}_mask.png")
    (root / "c.jpg").write_bytes(b"\xff\xd8\xff garbage")
    Image.fromarray(m).save(root / "c_mask.png")
    Image.fromarray(rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)).save(root / "d.png")
    Image.fromarray(m[:70]).save(root / "d_mask.png")
    out = tmp_path / "out"
    cfg = small_cfg(out, "shards.source=folder", f"shards.root={root}", "shards.num_samples=6")
    m = build(cfg, progress=False)
    assert m["counts"]["total"] == 6 and m["counts"]["scenes"] == 2
    assert m["skipped"]["by_reason"] == {"unreadable image": 1,
                                         "mask size differs from image": 1}
    assert {d["input"] for d in m["skipped"]["inputs"]} == {"c.jpg", "d.png"}
    ids = {s.meta["image_id"] for r in m["shards"] for s in read_shard(out / r["name"])}
    assert ids <= {"folder/a", "folder/b"}


def test_kernel_bank_gives_the_on_the_fly_kernels(ref, tmp_path):
    from data_prep.kernels.bank import KernelBank, write_bank

    cfg = small_cfg(tmp_path / "banked", f"shards.kernel_bank={tmp_path / 'bank'}",
                    "shards.num_samples=8")
    cfg.kernels.kernel_size, cfg.kernels.sheet = 9, False
    cfg.kernels.out_dir = str(tmp_path / "bank")
    write_bank(cfg.kernels, progress=False)
    m = build(cfg, progress=False)
    bank = KernelBank(tmp_path / "bank")
    assert m["kernels"]["bank"] == str(tmp_path / "bank")
    flying = {s.key: s for p in ref.glob("*.tar") for s in read_shard(p)}
    for row in m["shards"]:
        for s in read_shard(tmp_path / "banked" / row["name"]):
            assert np.array_equal(s.kernels, bank[np.array(s.meta["kernel_ids"])])
            assert np.array_equal(s.kernels, flying[s.key].kernels)
            assert np.array_equal(s.blurry, flying[s.key].blurry)


def test_shipped_configs_load():
    b = load_config(["shards/builtin"]).shards
    assert (b.source, b.num_samples, b.shard_size, b.out_dir) == (
        "builtin", 256, 64, "data/shards/builtin")
    a = load_config(["shards/ade20k"], ["shards.root=/nonexistent"])
    assert a.shards.source == "ade20k" and a.kernels.count == 500000
    with pytest.raises(ValueError, match="shards.root"):
        build(a, progress=False)


def test_cli_bad_root_is_one_line(capsys):
    from data_prep.__main__ import main

    assert main(["shards", "shards.source=ade20k", "shards.root=/nonexistent/ade"]) == 2
    err = capsys.readouterr().err
    assert "shards.root=/nonexistent/ade" in err and "images/ADE/training" in err


# --------------------------------------------------------------------------- parts


def manifest_keys(out: Path, m: dict) -> list[str]:
    return [s.key for row in m["shards"] for s in read_shard(out / row["name"])]


def test_parts_then_a_final_pass_equal_one_run(ref, tmp_path, monkeypatch):
    out = tmp_path / "parts"
    seen = set()
    for part in range(3):
        m = build(small_cfg(out, f"shards.part={part}", "shards.parts=3"), progress=False)
        names = {r["name"] for r in m["shards"]}
        assert names and all(int(n[-10:-4]) % 3 == part for n in names)  # s % parts == part
        assert names == {p.name for p in out.glob("*.tar")} - seen  # built only its own
        seen |= names
        assert (out / f"manifest.part-{part}.json").exists() and m["part"]["count"] == 3
        assert m["counts"]["total"] == sum(r["samples"] for r in m["shards"])
    assert not (out / "manifest.json").exists()
    assert json.loads((out / "plan.json").read_text()) == json.loads(
        (ref / "plan.json").read_text())
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}

    def no_sample(item):
        raise AssertionError("the final pass built a sample")

    monkeypatch.setattr("data_prep.shards.workers.make_one", no_sample)
    m = build(small_cfg(out), progress=False)  # the final, non-array pass
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == before
    assert tar_bytes(out) == tar_bytes(ref)
    assert sorted(manifest_keys(out, m)) == [f"{i:08d}" for i in range(40)]
    assert m["counts"]["total"] == 40 and m["counts"]["planned"] == 40 and "part" not in m
    r = json.loads((ref / "manifest.json").read_text())
    assert m["shards"] == r["shards"]
    assert m["patterns"] == {s: p.replace(str(ref), str(out)) for s, p in r["patterns"].items()}
    assert json.loads((out / "manifest.json").read_text()) == m
    assert not list(out.glob("manifest.part-*.json")) and not list(out.glob(".*.tmp"))


def test_parts_run_concurrently_in_subprocesses(ref, tmp_path):
    out = tmp_path / "concurrent"
    procs = [subprocess.Popen([sys.executable, "-m", "data_prep", "shards", "--quiet", *SMALL,
                               f"shards.out_dir={out}", f"shards.part={i}", "shards.parts=2"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(2)]
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr.decode()
        assert b"run once more without shards.part/parts" in stdout
    assert tar_bytes(out) == tar_bytes(ref)
    m = build(small_cfg(out), progress=False)
    assert sorted(manifest_keys(out, m)) == [f"{i:08d}" for i in range(40)]
    assert m["counts"]["total"] == 40


def test_failures_are_counted_once_across_parts_and_rebuilds(tmp_path, monkeypatch):
    import data_prep.synth

    real = data_prep.synth.make_sample
    bad = {"00000003", "00000010", "00000017", "00000030"}

    def flaky(key, *a, **k):
        if key in bad:
            raise ValueError(f"broken scene {key}")
        return real(key, *a, **k)

    out = tmp_path / "failing"
    monkeypatch.setattr(data_prep.synth, "make_sample", flaky)
    for part in range(2):
        build(small_cfg(out, f"shards.part={part}", "shards.parts=2"), progress=False)
    monkeypatch.setattr(data_prep.synth, "make_sample", real)  # the final pass builds nothing
    m = build(small_cfg(out), progress=False)
    assert {f["key"] for f in m["failed"]} == bad and m["counts"]["failed"] == 4
    assert all("broken scene" in f["reason"] for f in m["failed"])
    keys = manifest_keys(out, m)
    assert sorted(keys) == sorted({f"{i:08d}" for i in range(40)} - bad)
    assert m["counts"]["total"] == 36 == sum(r["samples"] for r in m["shards"])
    # rebuild the shard that holds sample 3 with a working scene: no longer failed
    row = next(r for r in m["shards"] if r["keys"][0] <= "00000003" <= r["keys"][1])
    (out / row["name"]).unlink()
    m = build(small_cfg(out), progress=False)
    assert {f["key"] for f in m["failed"]} == bad - {"00000003"}
    assert "00000003" in manifest_keys(out, m) and m["counts"]["total"] == 37


def test_plan_is_created_once_and_compared(tmp_path):
    from data_prep.shards.plan import store_plan

    plan = {"fingerprint": "a", "content": {}, "eligible": [["x", "y"]], "skipped": []}
    store_plan(tmp_path, plan)
    store_plan(tmp_path, json.loads(json.dumps(plan)))  # a parallel part: same plan
    with pytest.raises(ValueError, match="other scenes"):
        store_plan(tmp_path, {**plan, "eligible": []})
    store_plan(tmp_path, {**plan, "fingerprint": "b"})  # a stale plan of another config
    assert json.loads((tmp_path / "plan.json").read_text())["fingerprint"] == "b"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_bad_part_is_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"shards.part must be in .* = \[0, 1\]"):
        build(small_cfg(tmp_path, "shards.part=2", "shards.parts=2"), progress=False)
    with pytest.raises(ValueError, match="shards.parts must be >= 1"):
        build(small_cfg(tmp_path, "shards.parts=0"), progress=False)
