"""The data contract (docs/design.md §8): the shard sample schema, the one shard writer, shard
lists and the one DataModule.

Modules: ``schema`` (a sample's members and meta), ``writer`` (samples -> a shard, atomic and
byte-reproducible), ``shards`` (patterns -> shard URLs), ``batch`` (one sample's tensors, the
batch), ``streams`` (the train and validation streams), ``datamodule`` (``BlurDataModule``),
``weights``, ``uniform`` and ``throughput`` (for ``bench/``).
"""

from blurfield.data.schema import (
    SCHEMA_VERSION,
    GTField,
    Sample,
    SampleError,
    decode_sample,
    encode_sample,
    gt_field,
    make_meta,
    sharp_linear,
)
from blurfield.data.shards import count_samples, expand_shards
from blurfield.data.weights import segment_weights
from blurfield.data.writer import ShardWriter, write_shard


def __getattr__(name: str):
    """BlurDataModule imports lightning (seconds): load it only when asked for."""
    if name == "BlurDataModule":
        from blurfield.data.datamodule import BlurDataModule

        return BlurDataModule
    if name == "datamodule_throughput":
        from blurfield.data.throughput import datamodule_throughput

        return datamodule_throughput
    raise AttributeError(f"module 'blurfield.data' has no attribute '{name}'")


__all__ = [
    "SCHEMA_VERSION",
    "BlurDataModule",
    "GTField",
    "Sample",
    "SampleError",
    "ShardWriter",
    "count_samples",
    "decode_sample",
    "encode_sample",
    "expand_shards",
    "gt_field",
    "make_meta",
    "segment_weights",
    "sharp_linear",
    "datamodule_throughput",
    "write_shard",
]
