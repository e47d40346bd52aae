"""conf/sweep/ablation_B.yaml: a valid W&B sweep that runs `blurfield train` over B, each
run its own (name, tag). Its list of B is the one definition of the ablation's values:
the experiment files take B from the command line, and slurm/ablation_B.sbatch reads the
list when it runs (tested here outside Slurm with a stand-in srun; tests/test_slurm.py
runs it on a real Slurm).

Validated offline with jsonschema against a minimal schema written here from the W&B
sweep-configuration documentation (top-level keys, methods, metric, parameter forms,
command list); when the `sweeps` package is installed, also against its own schema.json.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from omegaconf import OmegaConf

from blurfield.config import load_config

REPO = Path(__file__).resolve().parent.parent
SWEEP = REPO / "conf" / "sweep" / "ablation_B.yaml"
SBATCH = REPO / "slurm" / "ablation_B.sbatch"

_PARAM = {
    "type": "object",
    "oneOf": [
        {"required": ["value"]},
        {"required": ["values"], "properties": {"values": {"type": "array", "minItems": 1}}},
        {"required": ["min", "max"]},
    ],
    "properties": {"distribution": {"enum": [
        "constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
        "log_uniform_values", "q_log_uniform", "q_log_uniform_values", "inv_log_uniform",
        "inv_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal", "beta",
        "q_beta"]}},
}
SCHEMA = {
    "type": "object",
    "required": ["method"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"}, "description": {"type": "string"},
        "program": {"type": "string"}, "entity": {"type": "string"},
        "project": {"type": "string"}, "run_cap": {"type": "integer", "minimum": 1},
        "method": {"enum": ["grid", "random", "bayes", "custom"]},
        "metric": {"type": "object", "required": ["name"], "additionalProperties": False,
                   "properties": {"name": {"type": "string"},
                                  "goal": {"enum": ["minimize", "maximize"]},
                                  "target": {"type": "number"}}},
        "parameters": {"type": "object", "minProperties": 1, "additionalProperties": _PARAM},
        "command": {"type": "array", "items": {"type": "string"}},
        "early_terminate": {"type": "object"},
    },
}


def sweep() -> dict:
    return yaml.safe_load(SWEEP.read_text())


def compose(cfg: dict) -> list:
    """The resolved config of each run of a grid sweep, as its command composes it: the
    ``--config`` files, the fixed ``key=value`` words, then one value per parameter."""
    import itertools

    cmd = cfg["command"]
    assert cmd[:2] == ["blurfield", "train"] and cmd[-1] == "${args_no_hyphens}"
    words = cmd[2:-1]
    files = [words[i + 1] for i, w in enumerate(words) if w in ("--config", "-c")]
    fixed = [w for w in words if "=" in w]
    keys = list(cfg["parameters"])
    grids = [spec.get("values", [spec.get("value")]) for spec in cfg["parameters"].values()]
    return [load_config(files, [*fixed, *(f"{k}={v}" for k, v in zip(keys, combo))])
            for combo in itertools.product(*grids)]


def b_values() -> list[int]:
    return sweep()["parameters"]["model.n_basis"]["values"]


def test_sweep_matches_the_schema_and_the_schema_rejects_mistakes():
    cfg = sweep()
    jsonschema.validate(cfg, SCHEMA)
    for bad in ({**cfg, "method": "gridd"}, {**cfg, "parametres": {}},
                {**cfg, "parameters": {"model.n_basis": {"valuez": [15]}}},
                {**cfg, "metric": {"name": "val/loss", "goal": "lower"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


def test_sweep_runs_blurfield_train_over_B():
    cfg = sweep()
    assert cfg["method"] == "grid"
    assert b_values() == [15, 25, 40]  # paper Table 4
    runs = compose(cfg)  # every parameter and fixed override is accepted by the schema
    assert [r.model.n_basis for r in runs] == b_values()
    for r in runs:  # the ablation's schedule (Table 4: 450 epochs, L1 from epoch 300)
        assert (r.train.epochs, r.train.kernel_loss_p_switch_epoch) == (450, 300)
        assert r.logging.mode == "online" and r.logging.group == "ablation_B"
    from blurfield.tasks.train import MONITOR

    assert cfg["metric"]["name"] == MONITOR  # a metric the training logs


def test_sweep_runs_get_distinct_names_and_tags():
    """Each run is named and tagged after its B (the sweep once composed experiment/paper:
    every run was named `paper` and tagged B25, and the runs collided)."""
    runs = compose(sweep())
    names = [r.train.run_name for r in runs]
    assert names == [f"ablation_B{b}" for b in b_values()]
    tags = [list(r.logging.tags) for r in runs]
    assert len({tuple(t) for t in tags}) == len(runs)
    for b, t in zip(b_values(), tags):
        assert f"B{b}" in t and not any(f"B{o}" in t for o in b_values() if o != b), t


def test_compose_catches_colliding_runs():
    """The negative control: the sweep as it was (experiment/paper) gives one name."""
    old = sweep()
    old["command"] = [w.replace("experiment/ablation_B", "experiment/paper")
                      for w in old["command"]]
    runs = compose(old)
    assert {r.train.run_name for r in runs} == {"paper"}
    assert {tuple(r.logging.tags) for r in runs} == {("estimator", "paper", "B25")}


ABLATIONS = ("ablation_B", "ablation_B_l2_450", "ablation_B_full")


def test_every_ablation_experiment_runs_the_sweeps_values_as_distinct_runs():
    """The experiment files take B from the command line; over the sweep's values each gives
    its own run name and tag, in its own group, and nothing else changes with B."""
    for name in ABLATIONS:
        runs = [load_config([f"experiment/{name}"], [f"model.n_basis={b}"]) for b in b_values()]
        assert [r.model.n_basis for r in runs] == b_values()
        assert len({r.train.run_name for r in runs}) == len(runs)
        assert len({tuple(r.logging.tags) for r in runs}) == len(runs)
        assert len({r.logging.group for r in runs}) == 1
        plain = [OmegaConf.to_container(r, resolve=True) for r in runs]
        for c in plain:
            del c["model"]["n_basis"], c["train"]["run_name"], c["logging"]["tags"]
        assert all(c == plain[0] for c in plain), name
    assert load_config(["experiment/ablation_B"]).model.n_basis in b_values()


def _sbatch_code() -> str:
    return "\n".join(line for line in SBATCH.read_text().splitlines()
                     if not line.startswith("#") or line.startswith("#SBATCH"))


def test_sbatch_does_not_restate_the_values_or_the_schedule():
    code = _sbatch_code()
    for b in b_values():
        assert not re.search(rf"(?<![\w.-]){b}(?![\w.-])", code), b
    assert "train.epochs" not in code and "kernel_loss_p_switch_epoch" not in code
    lo, hi = map(int, re.search(r"^#SBATCH --array=(\d+)-(\d+)$", code, re.M).groups())
    assert (lo, hi - lo + 1) == (0, len(b_values()))  # Slurm reads this line statically


def run_sbatch(tmp_path: Path, task: int, *args: str, **env: str) -> dict:
    """slurm/ablation_B.sbatch run by bash as array task ``task``, outside Slurm: a stand-in
    ``srun`` runs its command, tests/helpers/slurm_fake.py stands in for blurfield; its record."""
    import os
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    srun = bin_dir / "srun"
    srun.write_text('#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\nexec "$@"\n')
    srun.chmod(0o755)
    out = tmp_path / "rec"
    keep = ("HOME", "LANG", "TMPDIR", "VIRTUAL_ENV")
    run_env = {k: v for k, v in os.environ.items() if k in keep}
    run_env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(REPO),
                   BLURFIELD_CMD=f"{sys.executable} {REPO / 'tests' / 'helpers' / 'slurm_fake.py'}",
                   BLURFIELD_PYTHON=sys.executable, BLURFIELD_TEST_OUT=str(out),
                   SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_JOB_ID="7",
                   SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_TASK_MAX=str(len(b_values()) - 1),
                   SLURM_SUBMIT_DIR=str(tmp_path), **env)
    r = subprocess.run(["bash", str(SBATCH), *args], env=run_env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rec = json.loads((out / f"7_{task}_0.json").read_text())
    rec["stderr"] = r.stderr
    return rec


def test_sbatch_array_runs_the_sweeps_values_with_the_configs_schedule(tmp_path):
    recs = [run_sbatch(tmp_path, i) for i in range(len(b_values()))]
    got = [r["resolved"] for r in recs]
    assert [g["n_basis"] for g in got] == b_values()
    assert [g["run_name"] for g in got] == [f"B{b}-7" for b in b_values()]
    exp = load_config(["experiment/ablation_B"])  # the default config: its schedule
    assert {(g["epochs"], g["switch"], g["group"]) for g in got} == {
        (exp.train.epochs, exp.train.kernel_loss_p_switch_epoch, "ablation_B-7")}
    assert recs[0]["argv"][-2:] == ["--config", "experiment/ablation_B"]
    assert not any(r["stderr"] for r in recs)
    # another schedule: the config's, not one restated by the script
    full = run_sbatch(tmp_path, 0, "--config", "experiment/ablation_B_full")["resolved"]
    assert (full["epochs"], full["switch"], full["n_basis"]) == (1200, 300, b_values()[0])


def test_sbatch_reads_the_values_when_it_runs(tmp_path):
    """Negative control: the values the script runs follow the sweep file it finds (here a
    changed copy, found first in the submit directory as any --config name is)."""
    edited = sweep()
    edited["parameters"]["model.n_basis"]["values"] = [7, 9]
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "ablation_B.yaml").write_text(yaml.safe_dump(edited))
    rec = run_sbatch(tmp_path, 1)
    assert rec["resolved"]["n_basis"] == 9
    assert "leaves out values" not in rec["stderr"]
    rec = run_sbatch(tmp_path, 1, BLURFIELD_ABLATION_B="12 16 20 24")
    assert rec["resolved"]["n_basis"] == 16 and "leaves out values 24" in rec["stderr"]


@pytest.mark.skipif(importlib.util.find_spec("sweeps") is None, reason="sweeps not installed")
def test_sweep_matches_the_sweeps_package_schema():
    spec = importlib.util.find_spec("sweeps")
    schema = Path(spec.origin).parent / "config" / "schema.json"
    jsonschema.validate(sweep(), json.loads(schema.read_text()))
