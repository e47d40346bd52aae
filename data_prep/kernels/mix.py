"""A mixture of the hand-tremor and Boracchi & Foi generators: kernel ``i`` is drawn by one
of them, chosen by its own draw.

``u_i ~ U[0, 1)`` from ``SeedSequence([seed, STREAM, i])``: kernel ``i`` is Boracchi & Foi's
kernel ``i`` (``kernels.boracchi``) when ``u_i < kernels.mix.boracchi_share``, else the
tremor generator's kernel ``i`` (``kernels.tremor``), so every kernel still depends on
``(config, seed, i)`` only. With ``boracchi.anxiety`` near 0 Boracchi's paths are straight
or gently curved lines of a chosen length (linear motion); the tremor part, with a longer
focal range than docs/kernels.md's, gives wandering real-shake paths. ``component`` records
which (0 tremor, 1 Boracchi); the other generator's parameters are NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import boracchi, tremor
from .render import draw_uniform, kernel_rngs

STREAM = 3  # SeedSequence([seed, STREAM, index]) chooses the component
PARTS = (("t_", tremor), ("b_", boracchi))
PARAM_UNITS = {"component": "0 tremor, 1 Boracchi & Foi",
               **{p + k: u for p, mod in PARTS for k, u in mod.PARAM_UNITS.items()}}


def psfs(cfg: Any, seed: int, indices: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """PSFs ``(n, K, K)`` float32 and per-kernel params (tremor's prefixed ``t_``,
    Boracchi's ``b_``, and the render records), kernel ``i`` a function of ``(seed,
    indices[i])`` and the config only. ``cfg``: the ``kernels`` section."""
    idx = np.asarray(indices, dtype=np.int64)
    share = cfg.mix.boracchi_share
    comp = (draw_uniform(kernel_rngs(seed, STREAM, idx), 1)[:, 0] < share).astype(np.int64)
    k = cfg.kernel_size
    out = np.zeros((len(idx), k, k), np.float32)
    params = {key: np.full(len(idx), np.nan) for key in PARAM_UNITS}
    params["component"] = comp.astype(np.float64)
    for c, (prefix, mod) in enumerate(PARTS):
        sel = np.flatnonzero(comp == c)
        if len(sel) == 0:
            continue
        psf, prm = mod.psfs(cfg, seed, idx[sel])
        out[sel] = psf
        for name, v in prm.items():
            key = prefix + name if name in mod.PARAM_UNITS else name
            v = np.asarray(v)
            arr = params.setdefault(key, np.full(len(idx), np.nan if key != name else 0,
                                                 np.float64 if key != name else v.dtype))
            arr[sel] = v
    return out, params
