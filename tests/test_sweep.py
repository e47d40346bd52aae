"""conf/sweep/ablation_B.yaml: a valid W&B sweep that runs `blurfield train` over B, each
run its own (name, tag), with the values of B that slurm/ablation_B.sbatch runs too.

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


def test_sbatch_array_runs_the_sweeps_values_and_schedule():
    """slurm/ablation_B.sbatch restates what an sbatch script cannot read from the sweep
    (its --array header is static): its array size, default B list and schedule overrides
    must equal the sweep's values and experiment/ablation_B's schedule."""
    text = SBATCH.read_text()
    lo, hi = map(int, re.search(r"^#SBATCH --array=(\d+)-(\d+)$", text, re.M).groups())
    default = re.search(r'BLURFIELD_ABLATION_B:-([\d ]+)\}', text).group(1).split()
    assert (lo, hi - lo + 1) == (0, len(b_values()))
    assert [int(b) for b in default] == b_values()
    exp = load_config(["experiment/ablation_B"])
    assert f"train.epochs={exp.train.epochs}" in text
    assert f"train.kernel_loss_p_switch_epoch={exp.train.kernel_loss_p_switch_epoch}" in text


@pytest.mark.skipif(importlib.util.find_spec("sweeps") is None, reason="sweeps not installed")
def test_sweep_matches_the_sweeps_package_schema():
    spec = importlib.util.find_spec("sweeps")
    schema = Path(spec.origin).parent / "config" / "schema.json"
    jsonschema.validate(sweep(), json.loads(schema.read_text()))
