"""conf/sweep/ablation_B.yaml: a valid W&B sweep that runs `blurfield train` over B.

Validated offline with jsonschema against a minimal schema written here from the W&B
sweep-configuration documentation (top-level keys, methods, metric, parameter forms,
command list); when the `sweeps` package is installed, also against its own schema.json.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from blurfield.config import load_config

SWEEP = Path(__file__).resolve().parent.parent / "conf" / "sweep" / "ablation_B.yaml"

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
    assert cfg["parameters"]["model.n_basis"]["values"] == [15, 25, 40]
    cmd = cfg["command"]
    assert cmd[:2] == ["blurfield", "train"] and cmd[-1] == "${args_no_hyphens}"
    # every parameter and fixed override is a key=value the config schema accepts
    fixed = [a for a in cmd[2:-1] if "=" in a]
    for key, spec in cfg["parameters"].items():
        for v in spec.get("values", [spec.get("value")]):
            load_config(None, [*fixed, f"{key}={v}"])
    from blurfield.tasks.train import MONITOR

    assert cfg["metric"]["name"] == MONITOR  # a metric the training logs


@pytest.mark.skipif(importlib.util.find_spec("sweeps") is None, reason="sweeps not installed")
def test_sweep_matches_the_sweeps_package_schema():
    spec = importlib.util.find_spec("sweeps")
    schema = Path(spec.origin).parent / "config" / "schema.json"
    jsonschema.validate(sweep(), json.loads(schema.read_text()))
