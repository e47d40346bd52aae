"""Shard sample schema and the one DataModule (DESIGN §8)."""

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

__all__ = [
    "SCHEMA_VERSION",
    "GTField",
    "Sample",
    "SampleError",
    "decode_sample",
    "encode_sample",
    "gt_field",
    "make_meta",
    "sharp_linear",
]
