"""Kernels by id for the shard generator: from a bank on disk (``shards.kernel_bank``) or
generated on the fly from the ``kernels`` section; id i is the kernel a bank made with that
section holds at i."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from blurfield.config import KernelsCfg, ShardsCfg, as_config, plain

KERNEL_NOT_CONTENT = ("out_dir", "batch_size", "sheet", "chunk_size")  # no effect on kernels


class KernelSource:
    """Kernels by id: from a bank on disk or generated on the fly (``pool``: id range)."""

    def __init__(self, sc: ShardsCfg, kc: Any):
        """``sc``: the ``shards`` section; ``kc``: the ``kernels`` section (a
        :class:`KernelsCfg`, or a DictConfig of it), whose kernel size ``sc`` sets."""
        from data_prep.kernels.bank import KernelBank, check_cfg

        self.bank = None
        if sc.kernel_bank:
            self.bank = KernelBank(sc.kernel_bank)
            if self.bank.kernel_size != sc.kernel_size:
                raise ValueError(f"shards.kernel_bank={sc.kernel_bank} holds "
                                 f"{self.bank.kernel_size} px kernels but shards.kernel_size "
                                 f"is {sc.kernel_size}")
            size = len(self.bank)
        else:
            self.kc: KernelsCfg = dataclasses.replace(as_config(kc), kernel_size=sc.kernel_size)
            check_cfg(self.kc)
            size = self.kc.count
        self.pool = sc.kernel_pool or size
        if self.bank is not None and self.pool > size:
            raise ValueError(f"shards.kernel_pool={self.pool} exceeds the bank's {size} kernels")

    def get(self, ids: np.ndarray) -> np.ndarray:
        """(J,) ids -> (J, K, K) float32 correlation kernels."""
        if self.bank is not None:
            return self.bank[np.asarray(ids)]
        from data_prep.kernels.bank import generate

        return generate(self.kc, self.kc.seed, np.asarray(ids))[0]

    def describe(self) -> dict[str, Any]:
        if self.bank is not None:
            m = self.bank.meta
            return {"bank": str(self.bank.path), "generator": m.get("generator"),
                    "seed": m.get("seed"), "count": len(self.bank), "pool": self.pool,
                    "config": m.get("config")}
        c = {k: v for k, v in plain(self.kc).items() if k not in KERNEL_NOT_CONTENT}
        return {"bank": None, "generator": c["generator"], "seed": self.kc.seed,
                "pool": self.pool, "config": c}


__all__ = ["KERNEL_NOT_CONTENT", "KernelSource"]
