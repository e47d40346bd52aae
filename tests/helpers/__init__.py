"""Shared test helpers: fake shards, reference fields and moments, the Slurm and DDP stand-ins."""
