"""The sbatch scripts on a real single-node Slurm started here (tests/helpers/slurm_cluster.py).

- ablation_B.sbatch: a 3-task array, one B each (read from the sweep), one W&B group, the
  schedule of the config given (with a stand-in command that records what it ran and
  resolves its config files and overrides as `blurfield train` does);
- shards.sbatch: a 2-task array passes shards.part / shards.parts;
- train.sbatch: a real 2-task DDP `blurfield train` on the CPU, requeued with
  `scontrol requeue` after its first checkpoint; the requeued job resumes and finishes.

Skips when slurm-wlm/munge are not installed or not running as root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import fake_shards as fs
from helpers.slurm_cluster import job_state, local_slurm, missing_reason, wait_for

pytestmark = [pytest.mark.slurm,
              pytest.mark.skipif(missing_reason() is not None,
                                 reason=f"no local Slurm: {missing_reason()}")]

REPO = Path(__file__).resolve().parent.parent
FAKE = f"{sys.executable} {REPO / 'tests' / 'helpers' / 'slurm_fake.py'}"
CPU_OPTS = ["--gpus-per-node=0", "--cpus-per-task=1", "--mem=1G", "--time=10"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("slurm")
    with local_slurm(d) as env:
        path = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        env = dict(env, BLURFIELD_GPUS_PER_NODE="0", PYTHONPATH=path)
        yield d, env


def sbatch(env: dict, *args: str, cwd: Path) -> str:
    r = subprocess.run(["sbatch", "--parsable", *args], env=env, cwd=cwd, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().split(";")[0]


def wait_gone(env: dict, jobs: list[str], timeout: float) -> None:
    """Until squeue lists none of ``jobs`` (all array tasks ended)."""
    def gone() -> bool:
        r = subprocess.run(["squeue", "-h", "-j", ",".join(jobs), "-o", "%i"], env=env,
                           capture_output=True, text=True, timeout=10)
        return r.returncode == 0 and not r.stdout.strip()

    wait_for(gone, timeout, f"jobs {jobs} to end")


def test_ablation_array_and_shard_parts(cluster, tmp_path):
    d, env = cluster
    env = dict(env, BLURFIELD_CMD=FAKE, BLURFIELD_PYTHON=FAKE,
               BLURFIELD_TEST_OUT=str(tmp_path / "rec"))
    # the real Python reads the values of B from the sweep; the fake stands in for blurfield
    ablation = sbatch(dict(env, BLURFIELD_PYTHON=sys.executable), *CPU_OPTS,
                      f"--output={tmp_path}/%x-%A_%a.out",
                      str(REPO / "slurm" / "ablation_B.sbatch"),
                      "--config", "experiment/ablation_B_full", "data.workers=1", cwd=tmp_path)
    shards = sbatch(env, "--array=0-1", "--cpus-per-task=1", "--mem=1G",
                    f"--output={tmp_path}/%x-%A_%a.out", str(REPO / "slurm" / "shards.sbatch"),
                    "--config", "shards/builtin", cwd=tmp_path)
    wait_gone(env, [ablation, shards], 120)

    recs = [json.loads(p.read_text())
            for p in sorted((tmp_path / "rec").glob(f"{ablation}_*.json"))]
    assert len(recs) == 3, [p.read_text() for p in tmp_path.glob("*.out")]
    got = {r["env"]["SLURM_ARRAY_TASK_ID"]: r["resolved"] for r in recs}
    values = yaml.safe_load((REPO / "conf" / "sweep" / "ablation_B.yaml").read_text())[
        "parameters"]["model.n_basis"]["values"]
    assert {k: v["n_basis"] for k, v in got.items()} == {"0": 15, "1": 25, "2": 40}
    assert values == [15, 25, 40]  # task i runs the sweep's value i
    assert {v["group"] for v in got.values()} == {f"ablation_B-{ablation}"}
    assert {v["run_name"] for v in got.values()} == {f"B{b}-{ablation}" for b in (15, 25, 40)}
    for v in got.values():  # the schedule is the config's (the full one: 1,200 epochs)
        assert (v["epochs"], v["switch"], v["accelerator"], v["devices"], v["strategy"],
                v["resume"]) == (1200, 300, "cpu", 1, "auto", True)
    assert all(r["argv"][-3:] == ["--config", "experiment/ablation_B_full", "data.workers=1"]
               for r in recs)  # the user's arguments come last

    recs = [json.loads(p.read_text())
            for p in sorted((tmp_path / "rec").glob(f"{shards}_*.json"))]
    assert [r["argv"][:3] for r in recs] == [["-m", "data_prep", "shards"]] * 2, [
        p.read_text() for p in tmp_path.glob("*.out")]
    assert [[a for a in r["argv"] if a.startswith("shards.part")] for r in recs] == [
        ["shards.part=0", "shards.parts=2"], ["shards.part=1", "shards.parts=2"]]


def test_ddp_training_requeued_and_resumed(cluster, tmp_path):
    d, env = cluster
    fs.write_shards(tmp_path, "train", 4, 2, kernel_size=33)
    fs.write_shards(tmp_path, "val", 1, 2, kernel_size=33)
    env = dict(env, BLURFIELD_CMD=f"{sys.executable} -m blurfield")
    overrides = [
        "model.base_width=4", "model.n_basis=3", "data.crop_size=32",
        f"data.train_shards={tmp_path}/train-{{000000..000003}}.tar",
        f"data.val_shards={tmp_path}/val-000000.tar", "data.samples_per_epoch=4",
        "data.val_samples=2", "data.batch_size=2", "data.workers=0", "train.epochs=8",
        "logging.logger=csv", f"train.out_dir={tmp_path}/runs", "train.progress_bar=false",
        "train.limit_val_batches=1", "train.image_every_n_epochs=1000",
    ]
    job = sbatch(env, "--nodes=1", "--ntasks-per-node=2", *CPU_OPTS,
                 f"--output={tmp_path}/train-%j.out", str(REPO / "slurm" / "train.sbatch"),
                 *overrides, cwd=tmp_path)
    log = tmp_path / f"train-{job}.out"
    run = tmp_path / "runs" / f"blurfield-train-{job}"
    last = run / "checkpoints" / "last.ckpt"

    def checkpointed() -> bool:
        if job_state(env, job).get("JobState") not in ("PENDING", "RUNNING"):
            raise AssertionError(f"job ended before its first checkpoint:\n{log.read_text()}")
        return last.exists() and last.stat().st_size > 0

    wait_for(checkpointed, 150, "the first checkpoint")
    r = subprocess.run(["scontrol", "requeue", job], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    done = wait_for(lambda: (s := job_state(env, job)).get("JobState") in (
        "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL") and s, 150, "the job")
    text = log.read_text()
    assert done["JobState"] == "COMPLETED" and done["ExitCode"] == "0:0", text[-3000:]
    assert done["Restarts"] == "1"
    assert "restart 0: 1 node(s) x 2 task(s), accelerator cpu" in text
    assert "restart 1: 1 node(s) x 2 task(s), accelerator cpu" in text
    assert "MEMBER: 2/2" in text  # two DDP ranks
    assert "Restoring states from the checkpoint" in text  # the requeued job resumed
    assert (run / "estimator.pt").is_file() and (run / "summary.json").is_file()
