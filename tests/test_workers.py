"""``restore.workers``: photos of one ``estimate``/``deblur`` run in worker processes give the
files and lines of a run in one process, honour the thread plan and report a bad photo."""

from __future__ import annotations

import os

import numpy as np
import pytest
import skimage.data
import torch
from omegaconf import OmegaConf

from blurfield.api import load_field
from blurfield.cli import main
from blurfield.commands.estimate import EstimateJob
from blurfield.commands.workers import failure_line, plan_workers, run_photos
from blurfield.config import RestoreCfg
from blurfield.imageio import write_image

pytestmark = pytest.mark.usefixtures("one_thread")


def photo(h: int, w: int, offset: int = 0) -> np.ndarray:
    return skimage.data.astronaut()[offset : offset + h * 4 : 4, : w * 4 : 4] / 255.0


def test_plan():
    assert plan_workers("auto", 1, 2) == (1, 2)  # one photo: one process, every thread
    assert plan_workers("auto", 4, 2) == (2, 1)  # side by side at one thread each
    assert plan_workers(None, 4, 8) == (4, 2)  # no more processes than photos
    assert plan_workers("auto", 4, 1) == (1, 1)  # OMP_NUM_THREADS=1: one at a time
    assert plan_workers("auto", 4, 8, gpu=True) == (1, 8)
    assert plan_workers(3, 2, 4) == (2, 2) and plan_workers("2", 5, 3) == (2, 1)
    assert plan_workers(4, 5, 2) == (4, 1)  # asked for: oversubscribed, at least 1 thread
    for bad in (0, "two", 1.5, "-1"):
        with pytest.raises(ValueError, match="workers"):
            plan_workers(bad, 3, 2)
    assert failure_line("a.png", ValueError("broken")) == "a.png: broken"
    assert failure_line("a.png", RuntimeError("a.png: boom")) == "RuntimeError: a.png: boom"


def test_deblur_in_workers_equals_one_process(tmp_path, tiny_path, capsys):
    """Two workers (one thread each) against one process at one thread: the same files bit
    for bit, the same lines in input order, the bad photo reported alone."""
    names = ["a.png", "bad.png", "b.jpg", "c.png"]
    write_image(tmp_path / "a.png", photo(48, 64))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_image(tmp_path / "b.jpg", photo(40, 52, offset=40))
    write_image(tmp_path / "c.png", (photo(44, 60, offset=80)[..., 1] * 255).astype(np.uint8))
    inputs = [str(tmp_path / n) for n in names]
    runs = {}
    for workers, threads in ((1, 1), (2, 2)):
        out = tmp_path / f"out{workers}"
        rc = main(["deblur", *inputs, "--checkpoint", str(tiny_path), "--out", str(out),
                   "--iterations", "2", "restore.no_harm_probe=1",
                   f"restore.workers={workers}", f"restore.threads={threads}"])
        runs[workers] = rc, capsys.readouterr(), out
    (rc1, cap1, out1), (rc2, cap2, out2) = runs[1], runs[2]
    assert rc1 == rc2 == 1
    assert cap2.out == cap1.out and cap2.err == cap1.err
    assert [line.split(":")[0] for line in cap1.out.splitlines()] == [
        str(tmp_path / n) for n in names if n != "bad.png"]
    err = cap1.err.strip().splitlines()
    assert len(err) == 1 and "bad.png" in err[0]
    files = sorted(p.name for p in out1.iterdir())
    assert files == sorted(p.name for p in out2.iterdir()) and len(files) == 9
    for name in files:
        if name.endswith(".png"):
            assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name
        else:  # .npz: zip entries carry the time they were written
            with np.load(out1 / name) as z1, np.load(out2 / name) as z2:
                assert z1.files == z2.files
                for k in z1.files:
                    np.testing.assert_array_equal(z1[k], z2[k], err_msg=f"{name}: {k}")
    assert load_field(out2 / "c_field.npz").image_size == (44, 60)


def test_workers_run_at_the_planned_threads(tmp_path, tiny_path):
    for i in range(3):
        write_image(tmp_path / f"p{i}.png", photo(40, 48, offset=20 * i))
    rc = OmegaConf.structured(RestoreCfg(checkpoint=str(tiny_path), out_dir=str(tmp_path / "o"),
                                         device="cpu"))
    photos = sorted(tmp_path.glob("p*.png"))
    outcomes = run_photos(EstimateJob(rc, "auto"), photos, workers=2, threads=2)
    assert [o.path for o in outcomes] == [str(p) for p in photos]
    assert all(o.error is None for o in outcomes)
    assert {o.threads for o in outcomes} == {2} != {torch.get_num_threads()}
    assert os.getpid() not in {o.pid for o in outcomes}
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted(
        f"p{i}_{k}" for i in range(3) for k in ("field.npz", "kernels.png"))
