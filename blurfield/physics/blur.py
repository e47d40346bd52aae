"""The non-uniform blur operator ``H`` and its exact adjoint (docs/design.md §1).

    (H u)_i   = sum_b m^b_i (k^b ⋆ u)_i                 correlation, mask after
    H^T y     = sum_b k^b ⋆^T (m^b ⊙ y)

``k ⋆ u`` is a correlation, ``(k ⋆ u)_i = sum_j k_j u_{i+j}`` (what ``conv2d`` computes).
Shapes: ``u`` (N, C, H, W); ``kernels`` (N, B, K, K); ``mixing`` (N, B, H', W').

Padding of the input before a "valid" correlation:

- ``"valid"``: none, ``H' = H - K + 1``;
- ``"same"``: mirror padding (torch/kornia "reflect" = scipy "mirror"), ``(K-1)//2`` in
  front and ``K//2`` behind (Kornia's convention for even K), ``H' = H``;
- ``"circular"``: wrap-around padding with the same widths, ``H' = H``.

Padding is a gather ``P`` with an index map; its adjoint ``P^T`` scatters (index_add) the
padded strips back onto the pixels they were copied from, so ``blur_adjoint`` is exact.

Two paths compute the same thing: ``"direct"`` loops over the basis with Kornia's
``filter2d``; ``"fft"`` transforms the padded image once per call, each kernel once, and
shares the kernel spectrum across channels, working on a few kernels at a time so that the
B x C spectra are never all held at once. FFT sizes are 5-smooth, >= the padded size, so
circular wrap-around never reaches the valid output.
"""

from __future__ import annotations

import functools

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

PADDINGS = ("valid", "same", "circular")
METHODS = ("auto", "direct", "fft")
SPECTRUM_FRACTION = 0.25  # spectra held at once, as a fraction of the mixing tensor's bytes


# --------------------------------------------------------------------------- checks


def _fail(name: str, what: str) -> None:
    raise ValueError(f"{name}: {what}")


def check_field(kernels: Tensor, mixing: Tensor, tol: float = 1e-5) -> None:
    """Raise ``ValueError`` unless kernels (N, B, K, K) and mixing (N, B, H, W) are a field.

    Both must be finite, non-negative (within ``tol``), and sum to 1 within ``tol``:
    each kernel over its K x K support, the mixing over B at each pixel.
    """
    tol = max(tol, 1e-5)
    if kernels.dim() != 4:
        _fail("kernels", f"expected (N, B, K, K), got shape {tuple(kernels.shape)}")
    if mixing.dim() != 4:
        _fail("mixing", f"expected (N, B, H, W), got shape {tuple(mixing.shape)}")
    if kernels.shape[:2] != mixing.shape[:2]:
        _fail("mixing", f"(N, B) = {tuple(mixing.shape[:2])} does not match kernels' "
                        f"{tuple(kernels.shape[:2])}")
    for name, t, dim in (("kernels", kernels, (-2, -1)), ("mixing", mixing, (1,))):
        if not torch.isfinite(t).all():
            _fail(name, "contains NaN or inf")
        if t.min() < -tol:
            _fail(name, f"has negative values (min {t.min().item():.3g})")
        err = (t.sum(dim) - 1).abs().max().item()
        where = "over each K x K kernel" if name == "kernels" else "over B at each pixel"
        if err > tol:
            _fail(name, f"does not sum to 1 {where} (max error {err:.3g} > {tol:g})")


def _check_image(name: str, x: Tensor, kernels: Tensor) -> None:
    if x.dim() != 4:
        _fail(name, f"expected (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] != kernels.shape[0]:
        _fail(name, f"batch size {x.shape[0]} does not match kernels' {kernels.shape[0]}")
    if not torch.isfinite(x).all():
        _fail(name, "contains NaN or inf")


def _output_size(h: int, w: int, k: int, padding: str) -> tuple[int, int]:
    return (h - k + 1, w - k + 1) if padding == "valid" else (h, w)


def _input_size(h: int, w: int, k: int, padding: str) -> tuple[int, int]:
    return (h + k - 1, w + k - 1) if padding == "valid" else (h, w)


def _check_args(padding: str, method: str) -> None:
    if padding not in PADDINGS:
        raise ValueError(f"padding: {padding!r} is not one of {PADDINGS}")
    if method not in METHODS:
        raise ValueError(f"method: {method!r} is not one of {METHODS}")


# --------------------------------------------------------------------------- padding


@functools.lru_cache(maxsize=64)
def _pad_index_cpu(n: int, k: int, mode: str) -> Tensor:
    front, rear = (k - 1) // 2, k // 2
    i = torch.arange(-front, n + rear)
    if mode == "circular":
        return i % n
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i % period
    return torch.where(i >= n, period - i, i)


def _pad_index(n: int, k: int, mode: str, device: torch.device) -> Tensor:
    return _pad_index_cpu(n, k, mode).to(device)


def pad(x: Tensor, kernel_size: int, padding: str) -> Tensor:
    """P: (N, C, H, W) -> (N, C, H + K - 1, W + K - 1) for "same"/"circular"; identity for
    "valid". Mirror ("same") or wrap ("circular") copies, (K-1)//2 in front, K//2 behind."""
    if padding == "valid":
        return x
    h, w = x.shape[-2:]
    front, rear = (kernel_size - 1) // 2, kernel_size // 2
    if rear < min(h, w) and x.dim() == 4:  # F.pad is ~30x faster than the gather below
        mode = "reflect" if padding == "same" else "circular"
        return F.pad(x, (front, rear, front, rear), mode=mode)
    x = x.index_select(-2, _pad_index(h, kernel_size, padding, x.device))
    return x.index_select(-1, _pad_index(w, kernel_size, padding, x.device))


def pad_adjoint(y: Tensor, kernel_size: int, padding: str) -> Tensor:
    """P^T: (N, C, H + K - 1, W + K - 1) -> (N, C, H, W); adds each padded copy back onto
    the pixel it was copied from (mirror strips fold back onto the border)."""
    if padding == "valid":
        return y
    h, w = y.shape[-2] - kernel_size + 1, y.shape[-1] - kernel_size + 1
    iy = _pad_index(h, kernel_size, padding, y.device)
    ix = _pad_index(w, kernel_size, padding, y.device)
    out = y.new_zeros(*y.shape[:-2], h, y.shape[-1]).index_add(-2, iy, y)
    return out.new_zeros(*y.shape[:-2], h, w).index_add(-1, ix, out)


# --------------------------------------------------------------------------- FFT helpers


@functools.lru_cache(maxsize=256)
def smooth_size(n: int) -> int:
    """The smallest 5-smooth integer (only factors 2, 3, 5) >= n: fast FFT lengths."""
    m = max(n, 1)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def kernel_spectrum(kernels: Tensor, size: tuple[int, int]) -> Tensor:
    """rfft2 of (..., K, K) kernels zero-padded to ``size``: (..., L1, L2 // 2 + 1)."""
    return torch.fft.rfft2(kernels, s=size)


def _irfft2_crop(spec: Tensor, size: tuple[int, int], h: int, w: int) -> Tensor:
    """Inverse of ``rfft2(x, s=size)``, keeping the top-left h x w."""
    return torch.fft.irfft2(spec, s=size)[..., :h, :w]


def _fft_dtype(x: Tensor) -> Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


# --------------------------------------------------------------------------- the field


class BlurField:
    """One blur field, applied many times (Richardson–Lucy applies it 60+ times).

    Holds ``kernels`` (N, B, K, K) and ``mixing`` (N, B, H', W'); with ``cache=True`` and
    the fft path it keeps the B kernel spectra (not B x C) between calls.

    ``forward(u)``: (N, C, H, W) -> (N, C, H', W');  ``adjoint(y)``: the exact transpose.
    """

    def __init__(
        self,
        kernels: Tensor,
        mixing: Tensor,
        padding: str = "same",
        method: str = "auto",
        check: bool = True,
        cache: bool = True,
    ) -> None:
        _check_args(padding, method)
        if check:
            check_field(kernels, mixing)
        self.kernels, self.mixing = kernels, mixing
        self.padding, self.cache = padding, cache
        self.kernel_size = kernels.shape[-1]
        if kernels.shape[-2] != self.kernel_size:
            _fail("kernels", f"must be square, got {tuple(kernels.shape[-2:])}")
        self.out_size = tuple(mixing.shape[-2:])
        self.in_size = _input_size(*self.out_size, self.kernel_size, padding)
        self.method = method if method != "auto" else choose_method(self.kernel_size)
        self.check = check
        self._spec: Tensor | None = None

    # sizes
    @property
    def padded_size(self) -> tuple[int, int]:
        k = self.kernel_size
        return (self.out_size[0] + k - 1, self.out_size[1] + k - 1)

    @property
    def fft_size(self) -> tuple[int, int]:
        return (smooth_size(self.padded_size[0]), smooth_size(self.padded_size[1]))

    def _check_in(self, name: str, x: Tensor, size: tuple[int, int]) -> None:
        if not self.check:
            return
        _check_image(name, x, self.kernels)
        if tuple(x.shape[-2:]) != tuple(size):
            k = self.kernel_size
            if min(x.shape[-2:]) < k:
                _fail(name, f"image {tuple(x.shape[-2:])} is smaller than the {k} x {k} kernel")
            _fail(name, f"spatial size {tuple(x.shape[-2:])} does not match mixing "
                        f"{self.out_size} for padding={self.padding!r} (expected {size})")
        if self.padding != "valid" and min(size) < self.kernel_size:
            _fail(name, f"image {tuple(size)} is smaller than the kernel {self.kernel_size}")

    def _chunks(self, channels: int, dtype: torch.dtype) -> list[slice]:
        n, b = self.kernels.shape[:2]
        l1, l2 = self.fft_size
        itemsize = 16 if dtype == torch.float64 else 8
        per_kernel = n * channels * l1 * (l2 // 2 + 1) * itemsize
        budget = SPECTRUM_FRACTION * self.mixing.numel() * self.mixing.element_size()
        step = max(1, min(b, int(budget // max(per_kernel, 1))))
        return [slice(s, min(s + step, b)) for s in range(0, b, step)]

    def _kernel_spec(self, sl: slice, dtype: torch.dtype) -> Tensor:
        if self.cache:
            if self._spec is None or self._spec.dtype.to_real() != dtype:
                self._spec = kernel_spectrum(self.kernels.to(dtype), self.fft_size)
            return self._spec[:, sl]
        return kernel_spectrum(self.kernels[:, sl].to(dtype), self.fft_size)

    # H
    def forward(self, u: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, H', W'): ``sum_b m^b ⊙ (k^b ⋆ P u)``."""
        self._check_in("u", u, self.in_size)
        xp = pad(u, self.kernel_size, self.padding)
        h, w = self.out_size
        if self.method == "direct":
            out = None
            for b in range(self.kernels.shape[1]):
                y = kornia.filters.filter2d(xp, self.kernels[:, b], border_type="constant",
                                            padding="valid", behaviour="corr")
                term = self.mixing[:, b : b + 1] * y
                out = term if out is None else out + term
            return out
        dtype = _fft_dtype(xp).dtype
        x_spec = torch.fft.rfft2(xp.to(dtype), s=self.fft_size)[:, None]  # (N, 1, C, L1, L2')
        out = None
        for sl in self._chunks(u.shape[1], dtype):
            k_spec = self._kernel_spec(sl, dtype)[:, :, None]  # (N, b, 1, L1, L2')
            y = _irfft2_crop(x_spec * k_spec.conj(), self.fft_size, h, w)  # (N, b, C, h, w)
            term = torch.einsum("nbchw,nbhw->nchw", y, self.mixing[:, sl].to(dtype))
            out = term if out is None else out + term
        return out.to(u.dtype)

    __call__ = forward

    # H^T
    def adjoint(self, y: Tensor) -> Tensor:
        """(N, C, H', W') -> (N, C, H, W): ``P^T sum_b k^b ⋆^T (m^b ⊙ y)``."""
        self._check_in("y", y, self.out_size)
        k = self.kernel_size
        hp, wp = self.padded_size
        if self.method == "direct":
            acc = None
            for b in range(self.kernels.shape[1]):
                z = F.pad(self.mixing[:, b : b + 1] * y, (k - 1, k - 1, k - 1, k - 1))
                t = kornia.filters.filter2d(z, self.kernels[:, b].flip(-1, -2),
                                            border_type="constant", padding="valid",
                                            behaviour="corr")
                acc = t if acc is None else acc + t
            return pad_adjoint(acc, k, self.padding)
        dtype, in_dtype = _fft_dtype(y).dtype, y.dtype
        y = y.to(dtype)
        acc = None
        h, w = self.out_size
        for sl in self._chunks(y.shape[1], dtype):
            # m^b ⊙ y written straight into the zero-padded buffer (no separate pad copy)
            m = self.mixing[:, sl, None].to(dtype)
            if torch.is_grad_enabled() and (m.requires_grad or y.requires_grad):
                z = F.pad(m * y[:, None], (0, self.fft_size[1] - w, 0, self.fft_size[0] - h))
            else:
                z = y.new_zeros(y.shape[0], m.shape[1], y.shape[1], *self.fft_size)
                torch.mul(m, y[:, None], out=z[..., :h, :w])
            k_spec = self._kernel_spec(sl, dtype)[:, :, None]
            term = (torch.fft.rfft2(z) * k_spec).sum(1)
            acc = term if acc is None else acc + term
        x = _irfft2_crop(acc, self.fft_size, hp, wp)
        return pad_adjoint(x, k, self.padding).to(in_dtype)

    def ht_one(self, channels: int = 1) -> Tensor:
        """``H^T 1``: (N, channels, H, W), the column sums of H (not 1 where mixing varies)."""
        n = self.kernels.shape[0]
        ones = self.mixing.new_ones(n, 1, *self.out_size)
        out = self.adjoint(ones)
        return out.expand(-1, channels, -1, -1) if channels != 1 else out


def choose_method(kernel_size: int) -> str:
    """"direct" for small kernels, "fft" otherwise (measured in bench/blur.py)."""
    return "direct" if kernel_size <= 7 else "fft"


# --------------------------------------------------------------------------- functional


def blur(
    u: Tensor,
    kernels: Tensor,
    mixing: Tensor,
    padding: str = "valid",
    method: str = "auto",
    check: bool = True,
) -> Tensor:
    """``H u = sum_b m^b ⊙ (k^b ⋆ u)``.

    Args:
        u: (N, C, H, W) image (any space; the operator is linear).
        kernels: (N, B, K, K) correlation kernels, >= 0, each summing to 1.
        mixing: (N, B, H', W'), >= 0, summing to 1 over B; ``H' = H - K + 1`` for
            ``padding="valid"``, ``H' = H`` for "same" (mirror) and "circular" (wrap).
        method: "direct" (Kornia filter2d), "fft", or "auto".
        check: validate shapes, finiteness and simplex constraints (tolerance 1e-5).
    Returns:
        (N, C, H', W').
    """
    return BlurField(kernels, mixing, padding, method, check, cache=False).forward(u)


def blur_adjoint(
    y: Tensor,
    kernels: Tensor,
    mixing: Tensor,
    padding: str = "valid",
    method: str = "auto",
    check: bool = True,
) -> Tensor:
    """``H^T y = P^T sum_b k^b ⋆^T (m^b ⊙ y)``, the exact adjoint of :func:`blur`.

    ``y``: (N, C, H', W') -> (N, C, H, W), sizes as in :func:`blur`.
    """
    return BlurField(kernels, mixing, padding, method, check, cache=False).adjoint(y)


def correlate(x: Tensor, kernel: Tensor, padding: str = "valid", method: str = "auto") -> Tensor:
    """One kernel per sample: (N, C, H, W) ⋆ (N, K, K) -> (N, C, H', W'). No simplex check."""
    n, _, h, w = x.shape
    hh, ww = _output_size(h, w, kernel.shape[-1], padding)
    mixing = x.new_ones(n, 1, hh, ww)
    return BlurField(kernel[:, None], mixing, padding, method, check=False, cache=False)(x)


def ht_one(kernels: Tensor, mixing: Tensor, padding: str = "valid",
           method: str = "auto") -> Tensor:
    """``H^T 1``: (N, 1, H, W). Divide by it wherever column sums of 1 are assumed."""
    return BlurField(kernels, mixing, padding, method, check=False, cache=False).ht_one()


def per_pixel_kernels(kernels: Tensor, mixing: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    """The kernel at pixels (ys[p], xs[p]): ``sum_b m^b_p k^b``.

    kernels (N, B, K, K), mixing (N, B, H, W), ys/xs (P,) long -> (N, P, K, K).
    """
    m = mixing[:, :, ys, xs]  # (N, B, P)
    return torch.einsum("nbp,nbkl->npkl", m, kernels)


def uniform_field(kernel: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """A spatially uniform field: kernel (K, K) or (N, K, K) -> kernels (N, 1, K, K) and
    mixing of ones (N, 1, height, width)."""
    if kernel.dim() == 2:
        kernel = kernel[None]
    return kernel[:, None], kernel.new_ones(kernel.shape[0], 1, height, width)


def normalize_masks(soft: Tensor, hard: Tensor, eps: float = 1e-6) -> Tensor:
    """Soft layer masks onto the simplex: ``M_j / sum_j M_j``, the hard mask where the sum
    is at most ``eps`` (no layer's kernel reaches the pixel).

    soft (N, J, H, W) >= 0 (e.g. :func:`smooth_masks` with ``normalize=False``), hard
    (N, J, H, W) in {0, 1} on the same pixels -> (N, J, H, W) summing to 1 over J. The same
    rule as ``smooth_masks(normalize=True)``, for callers that compute the correlations
    themselves (the shard synthesiser works on each layer's support only).
    """
    total = soft.sum(1, keepdim=True)
    return torch.where(total > eps, soft / total.clamp(min=eps), hard.to(soft.dtype))


def smooth_masks(
    hard_masks: Tensor,
    layer_kernels: Tensor,
    padding: str = "valid",
    normalize: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """Algorithm 1's soft masks: each layer mask correlated with its own kernel.

    ``M_j = k_j ⋆ mask_j``, then (``normalize``) ``M_j / sum_j M_j`` so the masks are a
    mixing on the simplex (docs/design.md §2 choice); where the sum is below ``eps`` (no layer's
    kernel reaches the pixel) the cropped hard mask is used.

    hard_masks (N, J, H, W) in {0, 1} summing to 1 over J; layer_kernels (N, J, K, K)
    -> (N, J, H', W') with H' as for :func:`blur`.
    """
    n, j, h, w = hard_masks.shape
    k = layer_kernels.shape[-1]
    x = hard_masks.reshape(n * j, 1, h, w)
    soft = correlate(x, layer_kernels.reshape(n * j, k, k), padding)
    soft = soft.reshape(n, j, *soft.shape[-2:]).clamp(min=0)
    if not normalize:
        return soft
    total = soft.sum(1, keepdim=True)
    if padding == "valid":
        o = (k - 1) // 2
        hard = hard_masks[:, :, o : o + soft.shape[-2], o : o + soft.shape[-1]]
    else:
        hard = hard_masks
    return torch.where(total > eps, soft / total.clamp(min=eps), hard.to(soft.dtype))
