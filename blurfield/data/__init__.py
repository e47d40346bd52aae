"""Shard sample schema and the one DataModule (docs/design.md §8)."""

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
from blurfield.data.weights import segment_weights


def __getattr__(name: str):
    """BlurDataModule imports lightning (seconds): load it only when asked for."""
    if name in ("BlurDataModule", "datamodule_throughput"):
        from blurfield.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'blurfield.data' has no attribute '{name}'")


__all__ = [
    "SCHEMA_VERSION",
    "BlurDataModule",
    "GTField",
    "Sample",
    "SampleError",
    "decode_sample",
    "encode_sample",
    "gt_field",
    "make_meta",
    "segment_weights",
    "sharp_linear",
    "datamodule_throughput",
]
