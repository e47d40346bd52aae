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
``filter2d``; ``"fft"`` transforms the padded image once per call, shares each kernel
spectrum across channels, and holds one kernel's (or pair's) spectra at a time; the forward
pairs kernels (``k^a - i k^b``: one complex inverse transform per pair and channel yields
two real correlations). FFT sizes are 5-smooth, >= the padded size, so circular wrap-around
never reaches the output.

``BlurField(..., skip_tol=...)`` drops basis elements whose mixing is below a tolerance
everywhere in the image (or tile), with the error bound stated there.
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
    """rfft2 of (..., K, K) kernels zero-padded to ``size``: (..., L1, L2 // 2 + 1).
    Rows are transformed first, only the K non-zero ones, then columns."""
    return torch.fft.fft(torch.fft.rfft(kernels, n=size[1], dim=-1), n=size[0], dim=-2)


Pair = tuple[int, "int | None"]


def basis_pairs(count: int) -> list[Pair]:
    """The basis elements 0..count-1 in pairs (0, 1), (2, 3), ...; an odd last one alone."""
    return [(a, a + 1 if a + 1 < count else None) for a in range(0, count, 2)]


def pair_spectrum(kernels: Tensor, pairs: list[Pair], size: tuple[int, int]) -> Tensor:
    """Full 2-D DFT of ``q = k^a - i k^b`` for each pair (a, b) (``k^a`` where b is None).

    kernels (N, B, K, K) real -> (N, P, L1, L2) complex, zero-padded to ``size`` = (L1, L2).
    Rows are transformed first, only the K non-zero ones, then columns.
    """
    re = kernels[:, [a for a, _ in pairs]]
    im = torch.stack([-kernels[:, b] if b is not None else torch.zeros_like(kernels[:, 0])
                      for _, b in pairs], 1)
    q = torch.complex(re, im)
    return torch.fft.fft(torch.fft.fft(q, n=size[1], dim=-1), n=size[0], dim=-2)


def _conj_full(half: Tensor, n2: int) -> Tensor:
    """``conj(X)`` on the full grid from ``half = rfft2(x)`` of a real x, (..., L1, L2h) ->
    (..., L1, n2), by Hermitian symmetry: ``conj(X)[k1, k2] = X[-k1, -k2]``."""
    tail = half[..., 1 : n2 - half.shape[-1] + 1].flip(-1).flip(-2).roll(1, -2)
    return torch.cat([half.conj(), tail], -1)


def _irfft2_crop(spec: Tensor, size: tuple[int, int], h: int, w: int) -> Tensor:
    """Inverse of ``rfft2(x, s=size)``, keeping the top-left h x w."""
    return torch.fft.irfft2(spec, s=size)[..., :h, :w]


def _fft_dtype(x: Tensor) -> Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


# --------------------------------------------------------------------------- the field


class BlurField:
    """One blur field, applied many times (Richardson–Lucy applies it 60+ times).

    Holds ``kernels`` (N, B, K, K) and ``mixing`` (N, B, H', W'); with ``cache=True`` the fft
    path keeps the kernel spectra between calls: the pair spectra (forward) and the B real
    spectra (adjoint), each about B x L1 x L2 / 2 complex numbers.

    ``forward(u)``: (N, C, H, W) -> (N, C, H', W');  ``adjoint(y)``: the exact transpose of
    the operator it applies (of the skipped operator when elements are skipped).

    **Skipping** (``skip_tol``). Basis elements b whose mixing is at most ``skip_tol``
    everywhere (every pixel, every sample: ``max |m^b| <= skip_tol``) are dropped from the
    operator: not transformed, multiplied or adjoined. Let ``A`` be the kept elements,
    ``S_i = sum_b m^b_i`` (1 on the simplex) and ``delta_i = sum_{b not in A} m^b_i`` the
    dropped mass. Where ``delta > 0`` somewhere, the kept mixing is renormalised,
    ``m~^a = m^a S / (S - delta)``, so every row of ``H_skip`` keeps its sum (H_skip 1 =
    H 1). For non-negative kernels summing to 1 and non-negative mixing:

        (H u - H_skip u)_i = delta_i (mean of the dropped k^b ⋆ Pu - mean of the kept),

    two weighted means of values of u, hence, with ``eps = max_i delta_i`` (per sample,
    ``skip_error``), ``eps <= sum_{b not in A} max_i m^b_i <= (B - |A|) skip_tol``:

        |H u - H_skip u|_i         <= delta_i (max u - min u)   <= 2 eps ||u||_inf
        ||H^T y - H_skip^T y||_1   <= 2 sum_i delta_i |y_i|     <= 2 eps ||y||_1

    (row i of ``H - H_skip`` has absolute sum <= 2 delta_i; the adjoint bound is its
    transpose, per channel). ``H_skip`` is itself an exact linear operator, the full one with
    the renormalised mixing and zeros at the skipped elements, and ``adjoint`` is its exact
    transpose. ``skip_tol=0`` (default) drops only elements that are zero everywhere (e.g. a
    ground-truth field's absent layers, or a tile where a layer does not reach): exact.
    ``None`` skips nothing and inspects nothing (no host synchronisation).

    **fft path.** Forward, in kernel pairs: for each pair (a, b) of kept elements the
    complex kernel ``q = k^a - i k^b`` is transformed once (full grid), and one complex
    inverse transform per pair and channel gives both real correlations,
    ``ifft2(X conj(Q)) = k^a ⋆ x + i k^b ⋆ x`` (measured ~1.5x cheaper than two real
    inverse transforms); an odd element left over uses a real one. Adjoint: one real
    forward transform per kept kernel and channel of ``m^b ⊙ y``, written into one
    zero-padded buffer reused across kernels, accumulated as ``sum_b Z^b K^b`` and inverted
    once per channel (packing pairs into complex transforms gains nothing there). Under
    autograd (any input requiring grad) a chunked real-transform path is used instead. FFT
    sizes are 5-smooth, >= the padded size, so circular wrap-around never reaches the output.
    """

    def __init__(
        self,
        kernels: Tensor,
        mixing: Tensor,
        padding: str = "same",
        method: str = "auto",
        check: bool = True,
        cache: bool = True,
        skip_tol: float | None = 0.0,
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
        self.skip_tol = skip_tol
        self._skip(skip_tol)
        self._spec: Tensor | None = None  # (N, A, L1, L2h) real spectra (adjoint, autograd)
        self._pair_spec: Tensor | None = None  # (N, P, L1, L2) pair spectra (forward)

    def _skip(self, tol: float | None) -> None:
        """Sets ``active`` (kept element indices), the kept kernels and (renormalised)
        mixing, and ``skip_error`` (N,): ``max_i delta_i``, the dropped mixing mass."""
        b = self.kernels.shape[1]
        self.active = torch.arange(b, device=self.mixing.device)
        self.skip_error = self.mixing.new_zeros(self.mixing.shape[0])
        self._kernels, self._mix = self.kernels, self.mixing
        if tol is None:
            return
        if tol < 0:
            raise ValueError(f"skip_tol: must be >= 0 or None, got {tol}")
        peak = self.mixing.detach().abs().amax(dim=(0, 2, 3))  # (B,)
        keep = peak > tol
        if bool(keep.all()):
            return
        if not bool(keep.any()):
            keep[peak.argmax()] = True
        self.active = keep.nonzero().squeeze(1)
        dropped_idx = (~keep).nonzero().squeeze(1)
        self._kernels = self.kernels.index_select(1, self.active)
        kept = self.mixing.index_select(1, self.active)
        dropped = self.mixing.index_select(1, dropped_idx).sum(1, keepdim=True)  # delta
        if bool((dropped != 0).any()):
            kept_sum = kept.sum(1, keepdim=True)
            if bool(((kept_sum == 0) & (dropped != 0)).any()):
                raise ValueError(f"skip_tol: {tol:g} drops every element with mixing at some "
                                 "pixel; use a smaller tolerance")
            kept = kept * (1 + dropped / kept_sum.masked_fill(kept_sum == 0, 1))
            self.skip_error = dropped.detach().abs().amax(dim=(1, 2, 3))
        self._mix = kept

    # sizes
    @property
    def padded_size(self) -> tuple[int, int]:
        k = self.kernel_size
        return (self.out_size[0] + k - 1, self.out_size[1] + k - 1)

    @property
    def fft_size(self) -> tuple[int, int]:
        return (smooth_size(self.padded_size[0]), smooth_size(self.padded_size[1]))

    @property
    def pairs(self) -> list[Pair]:
        """Kept elements paired for the fft path (indices into ``active``)."""
        return basis_pairs(self._kernels.shape[1])

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
        n, b = self._kernels.shape[:2]
        l1, l2 = self.fft_size
        itemsize = 16 if dtype == torch.float64 else 8
        per_kernel = n * channels * l1 * (l2 // 2 + 1) * itemsize
        budget = SPECTRUM_FRACTION * self.mixing.numel() * self.mixing.element_size()
        step = max(1, min(b, int(budget // max(per_kernel, 1))))
        return [slice(s, min(s + step, b)) for s in range(0, b, step)]

    def _kernel_spec(self, sl: slice, dtype: torch.dtype) -> Tensor:
        if self.cache:
            if self._spec is None or self._spec.dtype.to_real() != dtype:
                self._spec = kernel_spectrum(self._kernels.to(dtype), self.fft_size)
            return self._spec[:, sl]
        return kernel_spectrum(self._kernels[:, sl].to(dtype), self.fft_size)

    def _pair_spectrum(self, p: int, dtype: torch.dtype) -> Tensor:
        """(N, L1, L2) complex spectrum of pair ``p`` (all pairs cached with ``cache``)."""
        if self.cache:
            if self._pair_spec is None or self._pair_spec.dtype.to_real() != dtype:
                self._pair_spec = pair_spectrum(self._kernels.detach().to(dtype), self.pairs,
                                                self.fft_size)
            return self._pair_spec[:, p]
        return pair_spectrum(self._kernels.detach().to(dtype), self.pairs[p : p + 1],
                             self.fft_size)[:, 0]

    # H
    def forward(self, u: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, H', W'): ``sum_{b in A} m^b ⊙ (k^b ⋆ P u)``."""
        self._check_in("u", u, self.in_size)
        xp = pad(u, self.kernel_size, self.padding)
        h, w = self.out_size
        if self.method == "direct":
            out = None
            for b in range(self._kernels.shape[1]):
                y = kornia.filters.filter2d(xp, self._kernels[:, b], border_type="constant",
                                            padding="valid", behaviour="corr")
                term = self._mix[:, b : b + 1] * y
                out = term if out is None else out + term
            return out
        dtype = _fft_dtype(xp).dtype
        if not _needs_grad(xp, self._kernels, self._mix):
            return self._forward_pairs(xp.to(dtype)).to(u.dtype)
        x_spec = torch.fft.rfft2(xp.to(dtype), s=self.fft_size)[:, None]  # (N, 1, C, L1, L2')
        out = None
        for sl in self._chunks(u.shape[1], dtype):
            k_spec = self._kernel_spec(sl, dtype)[:, :, None]  # (N, b, 1, L1, L2')
            y = _irfft2_crop(x_spec * k_spec.conj(), self.fft_size, h, w)  # (N, b, C, h, w)
            term = torch.einsum("nbchw,nbhw->nchw", y, self._mix[:, sl].to(dtype))
            out = term if out is None else out + term
        return out.to(u.dtype)

    __call__ = forward

    def _forward_pairs(self, xp: Tensor) -> Tensor:
        """fft forward without autograd, padded (N, C, Hp, Wp) -> (N, C, H', W').

        Per pair, ``z = fft2(conj(X) Q) / (L1 L2) = conj(ifft2(X conj(Q))) = k^a ⋆ x - i k^b ⋆ x``
        (both correlations real), so ``m^a (k^a ⋆ x) + m^b (k^b ⋆ x) = Re(z (m^a + i m^b))``.
        """
        n, c = xp.shape[:2]
        (h, w), size = self.out_size, self.fft_size
        m = self._mix.to(xp.dtype)
        x_half = torch.fft.rfft2(xp, s=size)  # (N, C, L1, L2h)
        out = xp.new_zeros(n, c, h, w)
        x_bar = buf = None
        for p, (a, b) in enumerate(self.pairs):
            q = self._pair_spectrum(p, xp.dtype)[:, None]  # (N, 1, L1, L2)
            if b is None:  # one real correlation: real transforms
                y = _irfft2_crop(x_half * q[..., : x_half.shape[-1]].conj(), size, h, w)
                out.addcmul_(y, m[:, a, None])
                continue
            if x_bar is None:
                x_bar = _conj_full(x_half, size[1])  # (N, C, L1, L2)
                buf = torch.empty_like(x_bar)
            torch.mul(x_bar, q, out=buf)
            z = torch.fft.fft2(buf, norm="forward")[..., :h, :w]
            out.add_((z * torch.complex(m[:, a, None], m[:, b, None])).real)  # Re(z (m^a + i m^b))
        return out

    # H^T
    def adjoint(self, y: Tensor) -> Tensor:
        """(N, C, H', W') -> (N, C, H, W): ``P^T sum_{b in A} k^b ⋆^T (m^b ⊙ y)``."""
        self._check_in("y", y, self.out_size)
        k = self.kernel_size
        hp, wp = self.padded_size
        if self.method == "direct":
            acc = None
            for b in range(self._kernels.shape[1]):
                z = F.pad(self._mix[:, b : b + 1] * y, (k - 1, k - 1, k - 1, k - 1))
                t = kornia.filters.filter2d(z, self._kernels[:, b].flip(-1, -2),
                                            border_type="constant", padding="valid",
                                            behaviour="corr")
                acc = t if acc is None else acc + t
            return pad_adjoint(acc, k, self.padding)
        dtype, in_dtype = _fft_dtype(y).dtype, y.dtype
        y = y.to(dtype)
        if not _needs_grad(y, self._kernels, self._mix):
            return pad_adjoint(self._adjoint_fast(y), k, self.padding).to(in_dtype)
        acc = None
        h, w = self.out_size
        for sl in self._chunks(y.shape[1], dtype):
            m = self._mix[:, sl, None].to(dtype)
            z = F.pad(m * y[:, None], (0, self.fft_size[1] - w, 0, self.fft_size[0] - h))
            k_spec = self._kernel_spec(sl, dtype)[:, :, None]
            term = (torch.fft.rfft2(z) * k_spec).sum(1)
            acc = term if acc is None else acc + term
        x = _irfft2_crop(acc, self.fft_size, hp, wp)
        return pad_adjoint(x, k, self.padding).to(in_dtype)

    def _adjoint_fast(self, y: Tensor) -> Tensor:
        """fft adjoint without autograd, (N, C, H', W') -> padded (N, C, Hp, Wp):
        ``irfft2(sum_b rfft2(m^b ⊙ y) K^b)``, one kernel at a time; each masked image is
        written straight into one zero-padded buffer reused across kernels."""
        n, c = y.shape[:2]
        (h, w), size, (hp, wp) = self.out_size, self.fft_size, self.padded_size
        m = self._mix.to(y.dtype)
        real = y.new_zeros(n, c, *size)
        acc = None
        for b in range(self._kernels.shape[1]):
            torch.mul(y, m[:, b, None], out=real[..., :h, :w])
            k_spec = self._kernel_spec(slice(b, b + 1), y.dtype)  # (N, 1, L1, L2h)
            spec = torch.fft.rfft2(real)
            if acc is None:
                acc = spec.mul_(k_spec)
            else:
                acc.addcmul_(spec, k_spec)
        return _irfft2_crop(acc, size, hp, wp)

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
    skip_tol: float | None = None,
) -> Tensor:
    """``H u = sum_b m^b ⊙ (k^b ⋆ u)``.

    Args:
        u: (N, C, H, W) image (any space; the operator is linear).
        kernels: (N, B, K, K) correlation kernels, >= 0, each summing to 1.
        mixing: (N, B, H', W'), >= 0, summing to 1 over B; ``H' = H - K + 1`` for
            ``padding="valid"``, ``H' = H`` for "same" (mirror) and "circular" (wrap).
        method: "direct" (Kornia filter2d), "fft", or "auto".
        check: validate shapes, finiteness and simplex constraints (tolerance 1e-5).
        skip_tol: drop basis elements whose mixing is <= skip_tol everywhere, with the error
            bound of :class:`BlurField`; None (default) inspects nothing (training loops).
    Returns:
        (N, C, H', W').
    """
    return BlurField(kernels, mixing, padding, method, check, cache=False,
                     skip_tol=skip_tol).forward(u)


def blur_adjoint(
    y: Tensor,
    kernels: Tensor,
    mixing: Tensor,
    padding: str = "valid",
    method: str = "auto",
    check: bool = True,
    skip_tol: float | None = None,
) -> Tensor:
    """``H^T y = P^T sum_b k^b ⋆^T (m^b ⊙ y)``, the exact adjoint of :func:`blur` (of the
    skipped operator with the same ``skip_tol``).

    ``y``: (N, C, H', W') -> (N, C, H, W), sizes as in :func:`blur`.
    """
    return BlurField(kernels, mixing, padding, method, check, cache=False,
                     skip_tol=skip_tol).adjoint(y)


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
