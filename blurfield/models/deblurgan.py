"""DeblurGAN (Kupyn et al. 2018): ResNet generator and 70 x 70 PatchGAN critic (docs/design.md §6).

Generator (``ngf`` = w, every conv with bias, instance norm without affine parameters):

    stem     reflect-pad 3, conv 7x7 3->w, IN, ReLU
    down1    conv 3x3 stride 2 (zero pad 1) w->2w, IN, ReLU
    down2    conv 3x3 stride 2 (zero pad 1) 2w->4w, IN, ReLU
    blocks   n_blocks x [reflect-pad 1, conv 3x3, IN, ReLU, Dropout(p), reflect-pad 1,
             conv 3x3, IN] + identity, at 4w channels
    up1      transposed conv 3x3 stride 2 (pad 1, output pad 1) 4w->2w, IN, ReLU
    up2      transposed conv 3x3 stride 2 (pad 1, output pad 1) 2w->w, IN, ReLU
    head     reflect-pad 3, conv 7x7 w->3, tanh
    output   clamp(x + head, -1, 1)                           (global skip)

Images are in [-1, 1] at the generator's boundary (``display * 2 - 1``); H and W must be
multiples of 4. With w = 64 and 9 blocks this has 11,378,179 parameters.

Critic (``ndf`` = d, kernel 4, padding 2, LeakyReLU 0.2, instance norm on all but the
first and last conv): conv s2 3->d; conv s2 d->2d; conv s2 2d->4d; conv s1 4d->8d; conv s1
8d->1. Each output value sees a 70 x 70 patch; an H x W input gives a (N, 1, h, w) map
(256 -> 35). With d = 64: 2,764,737 parameters.

Original weights (the DeblurGAN repository's ``latest_net_G.pth``) are a state dict of one
``nn.Sequential`` named ``model``; :func:`convert_original_state_dict` maps its keys.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blurfield.fileio import write_atomic

MULTIPLE = 4  # two stride-2 stages


def to_gan(display: Tensor) -> Tensor:
    """Display [0, 1] -> the generator's range [-1, 1]."""
    return display * 2.0 - 1.0


def from_gan(x: Tensor) -> Tensor:
    """The generator's range [-1, 1] -> display [0, 1]."""
    return (x + 1.0) * 0.5


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResBlock(nn.Module):
    """x + IN(conv(pad(Dropout(ReLU(IN(conv(pad(x)))))))), 3x3 convs, reflection padding."""

    def __init__(self, channels: int, dropout: float = 0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3)
        self.conv2 = nn.Conv2d(channels, channels, 3)
        self.norm1, self.norm2 = _norm(channels), _norm(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.conv1(F.pad(x, (1, 1, 1, 1), mode="reflect"))))
        y = self.dropout(y)
        y = self.norm2(self.conv2(F.pad(y, (1, 1, 1, 1), mode="reflect")))
        return x + y


class DeblurGenerator(nn.Module):
    """The DeblurGAN ResNet generator: (N, 3, H, W) in [-1, 1] -> (N, 3, H, W) in [-1, 1].

    Args:
        ngf: width of the first stage (64 in DeblurGAN); later stages 2 ngf and 4 ngf.
        n_blocks: residual blocks at 4 ngf channels (9 in DeblurGAN).
        dropout: dropout probability inside each block (0.5 in DeblurGAN).
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 9, dropout: float = 0.5):
        super().__init__()
        if ngf < 1 or n_blocks < 0:
            raise ValueError(f"ngf={ngf}, n_blocks={n_blocks}: need ngf >= 1, n_blocks >= 0")
        self.hparams_dict = {"ngf": int(ngf), "n_blocks": int(n_blocks), "dropout": float(dropout)}
        w = ngf
        self.stem = nn.Conv2d(3, w, 7)
        self.down1 = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList(ResBlock(4 * w, dropout) for _ in range(n_blocks))
        self.up1 = nn.ConvTranspose2d(4 * w, 2 * w, 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.ConvTranspose2d(2 * w, w, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.Conv2d(w, 3, 7)
        self.norms = nn.ModuleList([_norm(w), _norm(2 * w), _norm(4 * w), _norm(2 * w), _norm(w)])
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """DeblurGAN's initialisation: conv weights ~ N(0, 0.02), biases 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.normal_(0.0, 0.02)
                m.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """x (N, 3, H, W) in [-1, 1], H and W multiples of 4 -> clamp(x + G(x), -1, 1)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"generator input must be (N, 3, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % MULTIPLE or x.shape[-1] % MULTIPLE:
            raise ValueError(f"generator input H, W must be multiples of {MULTIPLE}, got "
                             f"{tuple(x.shape[-2:])}; pad it (run_generator does)")
        n = self.norms
        y = F.relu(n[0](self.stem(F.pad(x, (3, 3, 3, 3), mode="reflect"))))
        y = F.relu(n[1](self.down1(y)))
        y = F.relu(n[2](self.down2(y)))
        for block in self.blocks:
            y = block(y)
        y = F.relu(n[3](self.up1(y)))
        y = F.relu(n[4](self.up2(y)))
        y = torch.tanh(self.head(F.pad(y, (3, 3, 3, 3), mode="reflect")))
        return torch.clamp(x + y, -1.0, 1.0)


class PatchCritic(nn.Module):
    """70 x 70 PatchGAN critic: (N, 3, H, W) in [-1, 1] -> (N, 1, h, w) unbounded scores.

    ``n_layers`` stride-2 convs (3 in DeblurGAN), then two stride-1 convs; widths
    ndf * min(2**i, 8); instance norm + LeakyReLU(0.2) after all but the first and last.
    """

    def __init__(self, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        self.hparams_dict = {"ndf": int(ndf), "n_layers": int(n_layers)}
        widths = [3] + [ndf * min(2**i, 8) for i in range(n_layers + 1)]
        strides = [2] * n_layers + [1]
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 4, stride=strides[i], padding=2)
            for i in range(n_layers + 1)
        )
        self.norms = nn.ModuleList(_norm(c) for c in widths[2:])
        self.out = nn.Conv2d(widths[-1], 1, 4, stride=1, padding=2)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.normal_(0.0, 0.02)
                    m.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        y = F.leaky_relu(self.convs[0](x), 0.2)
        for conv, norm in zip(self.convs[1:], self.norms):
            y = F.leaky_relu(norm(conv(y)), 0.2)
        return self.out(y)


# --------------------------------------------------------------------------- weights


def _strip_module(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}


def is_original_state_dict(sd: object) -> bool:
    """Whether ``sd`` looks like the DeblurGAN repository's generator state dict."""
    return isinstance(sd, Mapping) and "model.1.weight" in _strip_module(sd)


def convert_original_state_dict(sd: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict]:
    """The DeblurGAN repository's ResnetGenerator state dict -> ours, and its hparams.

    Original keys (one ``nn.Sequential`` ``model``; instance-norm entries hold no weights,
    old PyTorch saved ``running_mean``/``running_var`` for them, which are dropped):
    ``model.1`` stem, ``model.4`` down1, ``model.7`` down2, ``model.{10+i}.conv_block.1``
    and ``.6`` (``.5`` without dropout) block i, then ``model.{10+n}`` up1,
    ``model.{13+n}`` up2, ``model.{17+n}`` head. A ``module.`` prefix is stripped.
    """
    sd = {k: v for k, v in _strip_module(sd).items()
          if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    if "model.1.weight" not in sd:
        raise ValueError("not a DeblurGAN generator state dict (no 'model.1.weight')")
    ngf = int(sd["model.1.weight"].shape[0])
    blocks = sorted({int(k.split(".")[1]) for k in sd if ".conv_block." in k})
    n = len(blocks)
    if blocks != list(range(10, 10 + n)):
        raise ValueError(f"DeblurGAN state dict: residual blocks at {blocks}, expected 10..")
    second = 6 if "model.10.conv_block.6.weight" in sd or n == 0 else 5
    names = {"model.1": "stem", "model.4": "down1", "model.7": "down2",
             f"model.{10 + n}": "up1", f"model.{13 + n}": "up2", f"model.{17 + n}": "head"}
    for i in range(n):
        names[f"model.{10 + i}.conv_block.1"] = f"blocks.{i}.conv1"
        names[f"model.{10 + i}.conv_block.{second}"] = f"blocks.{i}.conv2"
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix not in names:
            raise ValueError(f"DeblurGAN state dict: unexpected key '{key}'")
        out[f"{names[prefix]}.{leaf}"] = value
    dropout = 0.5 if second == 6 else 0.0
    return out, {"ngf": ngf, "n_blocks": n, "dropout": dropout}


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise ValueError(f"{path}: deblurring generator weight file not found")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # a Lightning checkpoint with pickled hparams
            return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: cannot be read as a torch file ({e})") from e


def _generator(sd: Mapping[str, Tensor], hparams: Mapping[str, Any], path: Path
               ) -> DeblurGenerator:
    g = DeblurGenerator(int(hparams["ngf"]), int(hparams["n_blocks"]),
                        float(hparams.get("dropout", 0.5)))
    try:
        g.load_state_dict(dict(sd), strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: generator weights do not fit: {str(e).splitlines()[0]}"
                         ) from e
    return g.eval()


def _hparams_from_ours(sd: Mapping[str, Tensor]) -> dict:
    n = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    return {"ngf": int(sd["stem.weight"].shape[0]), "n_blocks": n}


def load_deblurrer(path: str | Path) -> DeblurGenerator:
    """A DeblurGenerator in eval mode from ``path``: a fine-tune checkpoint (Lightning,
    keys ``generator.*``), a bare state dict in our naming, or the original DeblurGAN
    generator state dict (``model.N.*``). Raises ValueError naming the file otherwise."""
    path = Path(path)
    blob = _torch_load(path)
    if isinstance(blob, Mapping) and "state_dict" in blob:
        sd = {k[len("generator."):]: v for k, v in blob["state_dict"].items()
              if k.startswith("generator.")}
        if not sd:
            raise ValueError(f"{path}: checkpoint has no generator.* weights")
        return _generator(sd, _hparams_from_ours(sd), path)
    if is_original_state_dict(blob):
        sd, hp = convert_original_state_dict(blob)
        return _generator(sd, hp, path)
    if isinstance(blob, Mapping) and "stem.weight" in _strip_module(blob):
        sd = _strip_module(blob)
        return _generator(sd, _hparams_from_ours(sd), path)
    raise ValueError(f"{path}: not a deblurring generator (expected a fine-tune checkpoint, "
                     "a DeblurGAN latest_net_G.pth state dict, or a DeblurGenerator state dict)")


def save_generator(generator: DeblurGenerator, path: str | Path) -> None:
    """Write the generator's state dict (our naming) to ``path`` (temp file, then rename);
    :func:`load_deblurrer` reads it back."""
    path = Path(path)
    sd = {k: v.detach().cpu().clone() for k, v in generator.state_dict().items()}
    write_atomic(path, lambda f: torch.save(sd, f))


def run_generator(generator: nn.Module, blurry_display: Tensor) -> Tensor:
    """Restore display images: (N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1].

    Pads H and W up to multiples of 4 by reflection, maps to [-1, 1], runs the generator
    without gradients, crops back. Runs on the generator's device; returns on the input's.
    """
    h, w = blurry_display.shape[-2:]
    ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
    device = next(generator.parameters()).device
    x = blurry_display.to(device)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > MULTIPLE else "replicate")
    with torch.no_grad():
        y = from_gan(generator(to_gan(x)))
    return y[..., :h, :w].clamp(0, 1).to(blurry_display.device)
