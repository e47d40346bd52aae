"""A stand-in for ``blurfield`` / ``python`` in the Slurm test: records what a job ran.

    python tests/helpers/slurm_fake.py train --config X key=value ...        (as BLURFIELD_CMD)
    python tests/helpers/slurm_fake.py -m data_prep shards key=value ...      (as BLURFIELD_PYTHON)

Writes ``$BLURFIELD_TEST_OUT/<job>_<task>_<procid>.json`` with the arguments, the Slurm
variables and, for ``train``, the ``--config`` files and overrides resolved as ``blurfield
train`` resolves them (so a key the sbatch script sets that the schema does not know fails
here).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    record: dict = {"argv": argv,
                    "env": {k: v for k, v in os.environ.items() if k.startswith("SLURM_")}}
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    files = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--config", "-c")]
    files += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    if argv[:1] == ["train"]:
        from blurfield.config import load_config

        cfg = load_config(files, overrides)  # raises on an unknown key or a bad value
        record["resolved"] = {
            "n_basis": cfg.model.n_basis, "group": cfg.logging.group,
            "run_name": cfg.train.run_name, "epochs": cfg.train.epochs,
            "accelerator": cfg.train.accelerator, "devices": cfg.train.devices,
            "strategy": cfg.train.strategy, "resume": cfg.train.resume,
            "switch": cfg.train.kernel_loss_p_switch_epoch, "tags": list(cfg.logging.tags),
        }
    env = os.environ
    name = (f"{env.get('SLURM_ARRAY_JOB_ID') or env.get('SLURM_JOB_ID', 'x')}_"
            f"{env.get('SLURM_ARRAY_TASK_ID', 'none')}_{env.get('SLURM_PROCID', '0')}.json")
    out = Path(env["BLURFIELD_TEST_OUT"])
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
