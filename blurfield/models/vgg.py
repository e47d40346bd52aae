"""VGG19 features up to conv3_3, for DeblurGAN's perceptual content loss (docs/design.md §6).

Layers, indexed as in the standard VGG19 ``features`` list so a state dict in torchvision
naming (``features.N.weight``, ``features.N.bias``) loads as it is (every conv 3x3,
padding 1):

    0 conv1_1 3->64   1 ReLU   2 conv1_2 64->64    3 ReLU   4 max-pool 2x2
    5 conv2_1 64->128 6 ReLU   7 conv2_2 128->128  8 ReLU   9 max-pool 2x2
    10 conv3_1 128->256 11 ReLU 12 conv3_2 256->256 13 ReLU 14 conv3_3 256->256

The output is conv3_3 before its ReLU (index 14, as DeblurGAN), (N, 256, H/4, W/4);
1,735,488 parameters. Input: display images in [0, 1], normalised inside with the ImageNet
mean and standard deviation. No weights are downloaded: they come from a local file.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAST_INDEX = 14  # conv3_3
_PLAN = [64, 64, "M", 128, 128, "M", 256, 256, 256]


class VGG19Conv33(nn.Module):
    """Display (N, 3, H, W) in [0, 1] -> conv3_3 features (N, 256, H/4, W/4)."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for item in _PLAN:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                c = int(item)
        self.features = nn.Sequential(*layers[: LAST_INDEX + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, display: Tensor) -> Tensor:
        return self.features((display - self.mean) / self.std)


def load_vgg19_conv33(path: str | Path) -> VGG19Conv33:
    """The conv3_3 trunk with weights from a standard VGG19 state dict at ``path``
    (torchvision naming ``features.N.weight``; keys past index 14 and the classifier are
    ignored; a ``module.`` prefix is stripped). Frozen (no gradients) and in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: VGG19 weight file not found (put a VGG19 state dict with "
                         "keys features.N.weight there, e.g. torchvision's vgg19 weights)")
    try:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            sd = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: cannot be read as a torch file ({e})") from e
    if isinstance(sd, Mapping) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping):
        raise ValueError(f"{path}: not a state dict")
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    model = VGG19Conv33()
    wanted = model.state_dict().keys()
    missing = [k for k in wanted if k not in sd]
    if missing:
        raise ValueError(f"{path}: not a VGG19 state dict in torchvision naming (missing "
                         f"{missing[:3]}...)")
    try:
        model.load_state_dict({k: sd[k] for k in wanted}, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: VGG19 weights do not fit: {str(e).splitlines()[0]}") from e
    return model.requires_grad_(False).eval()
