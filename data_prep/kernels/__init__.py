"""Camera-shake kernel banks: the hand-tremor and Boracchi & Foi generators (docs/kernels.md).

``generate(cfg, seed, indices)`` gives correlation kernels; ``write_bank`` / ``KernelBank``
write and read a bank; ``psf_to_correlation`` / ``correlation_to_psf`` flip orientation.
"""

from .bank import KernelBank, generate, write_bank
from .render import correlation_to_psf, psf_to_correlation

__all__ = ["KernelBank", "generate", "write_bank", "psf_to_correlation", "correlation_to_psf"]
