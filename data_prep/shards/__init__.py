"""``python -m data_prep shards``: synthetic training shards (docs/design.md §2, §8), resumable.

    python -m data_prep shards [--config FILE] [shards.key=value ...]
    make shards CONFIG=conf/shards/ade20k.yaml ARGS="shards.root=/data/ADE20K_2021_17_01"

Steps:

1. **Scan** (ade20k, folder): every input is decoded once; unreadable, unsuitable or too
   small inputs are skipped with a reason. The result is kept in ``out_dir/plan.json`` so a
   rerun does not scan again. ``builtin`` needs no scan (scene i = dead-leaves scene i).
2. **Plan**: sample ``i`` gets a scene (builtin: scene i; otherwise the eligible scenes in a
   seeded order, cycled), a split (``val`` when ``blake2b(image_id)`` as a fraction of 2^64
   is below ``val_fraction``: a source image never lands in both splits) and a shard: the
   p-th sample of a split goes to ``<split>-{p // shard_size:06d}.tar``. Sample i's content
   depends only on (config, seed, i): its generator is ``default_rng(sample_seed(seed, i))``.
3. **Write**: worker processes (``workers``; 0 = in this process) synthesise and PNG-encode
   samples; this process writes each shard in sample order with
   :class:`blurfield.data.writer.ShardWriter` (a temp file ``.<name>.<random>.tmp``,
   renamed when complete). Members carry a fixed mtime, so the same config gives byte-identical
   shards whatever ``workers`` is. A rerun keeps every complete shard and rebuilds the rest:
   no sample is duplicated or lost. A rerun with another config into the same ``out_dir`` is
   refused. Samples that fail are listed in ``failed/<shard>.json``, written just before
   that shard's rename by the one process that builds it.
4. ``manifest.json``: counts, config, schema version, kernel source, skipped inputs with
   reasons, samples that failed, the shard list and brace patterns for ``data.*_shards``.

Parallel parts (``slurm/shards.sbatch``): ``shards.part=i shards.parts=n`` builds only the
shards numbered s with ``s % n == i`` in each split, from the same plan as a single run
(``plan.json`` is created once, atomically, and compared by every other part; each part
scans the inputs unless it is already there), and writes ``manifest.part-<i>.json``
instead of ``manifest.json``. Once every part has ended, one more run without part/parts
finds every shard complete (or rebuilds one that a failed part left), writes the merged
``manifest.json`` and removes the part manifests. The shards are byte-identical to a
single run's.

Kernels come from a bank (``shards.kernel_bank``) or are generated on the fly from the
``kernels`` section (default; nothing on disk needed): ids are drawn from
``[0, kernel_pool)`` and id i is the kernel that a bank made with that section holds at i.

Modules, one step each: ``plan`` (the plan, the fingerprint, ``plan.json``),
``kernel_source`` (kernels by id), ``workers`` (the processes that scan and synthesise),
``builder`` (:func:`build`: the steps in order, the failure records), ``manifest``
(``manifest.json``) and ``command`` (``python -m data_prep shards``).
"""

from __future__ import annotations

from blurfield.data.writer import MTIME
from data_prep.shards.builder import build, check_cfg
from data_prep.shards.kernel_source import KernelSource
from data_prep.shards.manifest import manifest_name
from data_prep.shards.plan import Item, make_plan, shard_name, split_of
from data_prep.shards.workers import tune_malloc

__all__ = ["MTIME", "Item", "KernelSource", "build", "check_cfg", "make_plan", "manifest_name",
           "shard_name", "split_of", "tune_malloc"]
