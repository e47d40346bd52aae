"""The two-head kernel estimator (docs/design.md §3; paper §5, Fig. 3).

A U-Net encoder feeds two heads: the mixing head decodes back to full resolution and gives
per-pixel mixing coefficients ``m`` (softmax over the B basis elements); the kernel head
decodes spatial means of the encoder features up to a 33 x 33 grid and gives B basis
kernels ``k`` (softmax over the K*K positions). Together they describe the blur field

    H u = sum_b m^b ⊙ (k^b ⋆ u)        (correlation, mask after; see blurfield.physics)

Layer table (w = base_width; every conv 3x3, padding 1, bias, LeakyReLU(0.01) unless
stated; no normalisation):

    stem        conv 3->w   (stem_gray: conv 1->w, used for 1-channel input once trained)
    encoder     down1..down5 = (conv, conv, 2x2 max-pool): w->w, w->2w, 2w->4w, 4w->8w,
                8w->16w; the pre-pool outputs s1..s5 are the skips
    bottleneck  conv 16w->16w at H/32
    mixing      Up(16w,16w,8w)+s5, Up(8w,8w,4w)+s4, Up(4w,4w,2w)+s3, Up(2w,2w,w)+s2,
                Up(w,w,w)+s1, conv w->w, conv w->w, conv w->B (linear), softmax over B
    kernel      g = mean of the bottleneck (16w x 1 x 1); skips = means of s5..s1 repeated
                to 2, 4, 8, 16, 32 px; Up(16w,16w,8w), Up(8w,8w,4w), Up(4w,4w,4w),
                Up(4w,2w,2w), Up(2w,w,w); conv 2x2 padding 1 w->w (32 -> 33), conv w->w,
                conv w->B (linear), softmax over K*K

With the defaults (B = 25, K = 33, w = 64) this has 79,829,298 parameters, 640 of them in
the grayscale stem.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SLOPE = 0.01  # LeakyReLU negative slope
MULTIPLE = 32  # H and W must be multiples of 2**5 (five max-pools)
SUPPORTED_KERNEL_SIZE = 33
KERNEL_CODES = ("bottleneck", "levels")  # what the kernel head decodes from (see class doc)


def _conv(c_in: int, c_out: int, k: int = 3, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=k, padding=padding)


def _act(x: Tensor) -> Tensor:
    return F.leaky_relu(x, SLOPE)



def pad_to_multiple(x: Tensor, multiple: int = MULTIPLE) -> Tensor:
    """(N, C, H, W) padded at the bottom and right to multiples of ``multiple`` (what the
    estimator needs): mirror padding, or edge replication when the image is too small to
    mirror. Crop the outputs back to (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)

class Down(nn.Module):
    """Encoder level: conv c_in->c_out, conv c_out->c_out, then 2x2 max-pool.

    forward(x (N, c_in, H, W)) -> (skip (N, c_out, H, W), pooled (N, c_out, H/2, W/2)).
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = _conv(c_in, c_out)
        self.conv2 = _conv(c_out, c_out)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        skip = _act(self.conv2(_act(self.conv1(x))))
        return skip, F.max_pool2d(skip, 2)


class Up(nn.Module):
    """Decoder level Up(c_in, c_skip, c_out).

    x (N, c_in, h, w) -> ConvTranspose2d(c_in, c_in, 2, stride 2) (no activation)
    -> conv c_in->c_out -> conv c_out->c_out -> zero-pad to the skip's size
    -> concat [skip, x] -> conv (c_skip + c_out)->c_out.  Output (N, c_out, H_s, W_s).
    """

    def __init__(self, c_in: int, c_skip: int, c_out: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_in, kernel_size=2, stride=2)
        self.conv1 = _conv(c_in, c_out)
        self.conv2 = _conv(c_out, c_out)
        self.fuse = _conv(c_skip + c_out, c_out)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = _act(self.conv2(_act(self.conv1(self.up(x)))))
        dy = skip.shape[-2] - x.shape[-2]
        dx = skip.shape[-1] - x.shape[-1]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return _act(self.fuse(torch.cat([skip, x], dim=1)))


class KernelEstimator(nn.Module):
    """Blurry display image -> (basis kernels, mixing coefficients).

    Args:
        n_basis: B, the number of basis kernels.
        kernel_size: K; only 33 is implemented (five doublings of 1 px, then a 2x2 conv).
        base_width: w, the width of the first level; every width scales with it.
        gamma_in: the model's own input transform ``clamp(x, 0) ** gamma_in - 0.5``.

    ``gray_trained`` (bool buffer, saved with the weights, False by default): whether the
    1-channel stem was trained; if not, 1-channel input is repeated to 3 channels.
    ``hparams_dict`` holds the four constructor arguments for weight files.
    """

    def __init__(
        self,
        n_basis: int = 25,
        kernel_size: int = 33,
        base_width: int = 64,
        gamma_in: float = 2.2,
        kernel_code: str = "bottleneck",
    ):
        super().__init__()
        if kernel_size != SUPPORTED_KERNEL_SIZE:
            raise ValueError(
                f"kernel_size={kernel_size}: only kernel_size=33 is implemented "
                "(the authors add one more Up block to the kernel head for 65)"
            )
        if int(n_basis) != n_basis or n_basis < 1:
            raise ValueError(f"n_basis={n_basis}: must be a positive integer")
        if int(base_width) != base_width or base_width < 1:
            raise ValueError(f"base_width={base_width}: must be a positive integer")
        if not gamma_in > 0:
            raise ValueError(f"gamma_in={gamma_in}: must be > 0")
        if kernel_code not in KERNEL_CODES:
            raise ValueError(f"kernel_code={kernel_code!r}: must be one of {KERNEL_CODES}")
        n_basis, base_width, gamma_in = int(n_basis), int(base_width), float(gamma_in)
        self.hparams_dict = {
            "n_basis": n_basis,
            "kernel_size": kernel_size,
            "base_width": base_width,
            "gamma_in": gamma_in,
            "kernel_code": kernel_code,
        }
        self.n_basis, self.kernel_size, self.gamma_in = n_basis, kernel_size, gamma_in
        self.kernel_code = kernel_code
        w = base_width
        self.register_buffer("gray_trained", torch.tensor(False))

        self.stem_rgb = _conv(3, w)
        self.stem_gray = _conv(1, w)
        # RGB training never reaches the gray stem: freeze it so DDP sees no unused
        # parameters (call ``stem_gray.requires_grad_(True)`` to train it).
        self.stem_gray.requires_grad_(False)
        self.down1 = Down(w, w)
        self.down2 = Down(w, 2 * w)
        self.down3 = Down(2 * w, 4 * w)
        self.down4 = Down(4 * w, 8 * w)
        self.down5 = Down(8 * w, 16 * w)
        self.bottleneck = _conv(16 * w, 16 * w)

        self.mix_up1 = Up(16 * w, 16 * w, 8 * w)
        self.mix_up2 = Up(8 * w, 8 * w, 4 * w)
        self.mix_up3 = Up(4 * w, 4 * w, 2 * w)
        self.mix_up4 = Up(2 * w, 2 * w, w)
        self.mix_up5 = Up(w, w, w)
        self.mix_conv1 = _conv(w, w)
        self.mix_conv2 = _conv(w, w)
        self.mix_out = _conv(w, n_basis)

        if kernel_code == "levels":  # mean and std of s1..s5 and the bottleneck: 2 x 47w
            self.ker_code = nn.Conv2d(2 * 47 * w, 16 * w, kernel_size=1)
        self.ker_up1 = Up(16 * w, 16 * w, 8 * w)
        self.ker_up2 = Up(8 * w, 8 * w, 4 * w)
        self.ker_up3 = Up(4 * w, 4 * w, 4 * w)
        self.ker_up4 = Up(4 * w, 2 * w, 2 * w)
        self.ker_up5 = Up(2 * w, w, w)
        self.ker_conv1 = _conv(w, w, k=2, padding=1)  # 32 x 32 -> 33 x 33
        self.ker_conv2 = _conv(w, w)
        self.ker_out = _conv(w, n_basis)

        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, gain: float = 0.5, nearest_up: bool = False) -> None:
        """weight ~ normal(0, gain sqrt(2 / (k_h k_w out))), bias = 0, for every conv.

        ``gain = 0.5`` is the authors' code: each layer then halves the activations' scale,
        so at the bottleneck (12 convs deep) the image's signal is ~1e-4 of its input scale
        and learned biases soon drown it. ``gain = 1`` is He initialisation (scale kept at
        every depth), which learns image-dependent kernels far sooner on a short budget.

        ``nearest_up``: every 2 x 2, stride-2 transposed conv gets one tap copied to all
        four, so it starts as a 1 x 1 conv followed by nearest-neighbour upsampling: no
        2-px checkerboard at initialisation (Odena et al. 2016; Aitken et al. 2017). With
        random taps the kernel head's last upsampling leaves a 2-px grid in the basis
        kernels that a CPU-length run does not train away.
        """
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                kh, kw = m.kernel_size
                m.weight.normal_(0.0, gain * math.sqrt(2.0 / (kh * kw * m.out_channels)))
                m.bias.zero_()
            if nearest_up and isinstance(m, nn.ConvTranspose2d):
                m.weight.copy_(m.weight[:, :, :1, :1].expand_as(m.weight))

    def kernel_head_parameters(self) -> list[nn.Parameter]:
        """The parameters only the kernel head uses (``ker_*``)."""
        return [p for n, p in self.named_parameters() if n.startswith("ker_")]

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(
                f"blurry_display must be (N, C, H, W), got shape {tuple(x.shape)}"
            )
        if x.shape[1] not in (1, 3):
            raise ValueError(
                f"blurry_display must have 1 or 3 channels, got {x.shape[1]} "
                f"(shape {tuple(x.shape)}); drop alpha or convert to RGB/gray first"
            )
        h, w = x.shape[-2:]
        if h % MULTIPLE or w % MULTIPLE or h == 0 or w == 0:
            raise ValueError(
                f"blurry_display height and width must be multiples of {MULTIPLE}, got "
                f"{h}x{w}; callers pad the image (e.g. reflect) and crop the mixing back"
            )

    def forward(self, blurry_display: Tensor) -> tuple[Tensor, Tensor]:
        """blurry_display (N, C, H, W) in [0, 1], C in {1, 3}, H and W multiples of 32.

        Returns kernels (N, B, K, K) (each >= 0, summing to 1) and mixing (N, B, H, W)
        (>= 0, summing to 1 over B at each pixel).
        """
        self._check_input(blurry_display)
        x = blurry_display.clamp(min=0) ** self.gamma_in - 0.5
        if x.shape[1] == 1 and bool(self.gray_trained):
            s0 = _act(self.stem_gray(x))
        else:
            s0 = _act(self.stem_rgb(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x))

        s1, p = self.down1(s0)
        s2, p = self.down2(p)
        s3, p = self.down3(p)
        s4, p = self.down4(p)
        s5, p = self.down5(p)
        bott = _act(self.bottleneck(p))

        return self._kernel_head(bott, (s1, s2, s3, s4, s5)), self._mixing_head(
            bott, (s1, s2, s3, s4, s5)
        )

    def _mixing_head(self, bott: Tensor, skips: tuple[Tensor, ...]) -> Tensor:
        s1, s2, s3, s4, s5 = skips
        y = self.mix_up1(bott, s5)
        y = self.mix_up2(y, s4)
        y = self.mix_up3(y, s3)
        y = self.mix_up4(y, s2)
        y = self.mix_up5(y, s1)
        y = _act(self.mix_conv2(_act(self.mix_conv1(y))))
        return torch.softmax(self.mix_out(y), dim=1)

    def _kernel_head(self, bott: Tensor, skips: tuple[Tensor, ...]) -> Tensor:
        def pooled(s: Tensor, size: int) -> Tensor:
            return s.mean((2, 3), keepdim=True).expand(-1, -1, size, size)

        s1, s2, s3, s4, s5 = skips
        y = bott.mean((2, 3), keepdim=True)
        if self.kernel_code == "levels":
            stats = [t for s in (s1, s2, s3, s4, s5, bott)
                     for t in (s.mean((2, 3), keepdim=True),
                               s.std((2, 3), correction=0, keepdim=True))]
            y = _act(self.ker_code(torch.cat(stats, 1)))
        y = self.ker_up1(y, pooled(s5, 2))
        y = self.ker_up2(y, pooled(s4, 4))
        y = self.ker_up3(y, pooled(s3, 8))
        y = self.ker_up4(y, pooled(s2, 16))
        y = self.ker_up5(y, pooled(s1, 32))
        y = _act(self.ker_conv2(_act(self.ker_conv1(y))))
        y = self.ker_out(y)  # (N, B, K, K)
        n, b, k, _ = y.shape
        return torch.softmax(y.reshape(n, b, k * k), dim=2).reshape(n, b, k, k)
