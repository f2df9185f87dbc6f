"""What turns a raw sample into model input: owned by the backbone, used by every datamodule.

A preprocessing object has a ``modality`` (the datamodule checks it serves the same one), a
``transform(train, augment)`` for one raw sample, and a ``collate`` for a list of samples (None:
PyTorch's default collate). Images: torchvision v2 transforms built from the backbone's input spec.
A text backbone would return a tokenizer call here and a padding collate.
"""

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
from torchvision.transforms import InterpolationMode, v2


@dataclass(frozen=True)
class InputSpec:
    """What an image backbone expects: size, normalisation, channels, resize interpolation."""

    size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    channels: int = 3
    interpolation: str = "bilinear"


class ToChannels(torch.nn.Module):
    """Grayscale to RGB (repeat) or RGB to grayscale, to match the backbone."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        c = img.shape[-3]
        if c == self.channels:
            return img
        if c == 1:
            return img.expand(self.channels, *img.shape[-2:]).contiguous()
        if self.channels == 1:
            return v2.functional.rgb_to_grayscale(img[:3])
        return img[: self.channels]


def build_transform(spec: InputSpec, augment: str, train: bool) -> v2.Compose:
    interp = InterpolationMode(spec.interpolation)
    head = [v2.ToImage(), ToChannels(spec.channels)]
    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(spec.mean), std=list(spec.std))]
    if not train or augment == "none":
        size = [v2.Resize(spec.size, interpolation=interp, antialias=True), v2.CenterCrop(spec.size)]
        return v2.Compose(head + size + tail)
    if augment == "basic":
        aug = [v2.RandomResizedCrop(spec.size, scale=(0.7, 1.0), interpolation=interp, antialias=True),
               v2.RandomHorizontalFlip()]
        return v2.Compose(head + aug + tail)
    # the geometric operations of the automatic policies take nearest or bilinear on tensors (image tensors, as
    # arrays become): bilinear where the backbone's resize is bicubic
    warp = interp if interp in (InterpolationMode.NEAREST, InterpolationMode.BILINEAR) else InterpolationMode.BILINEAR
    crop_flip = [v2.RandomResizedCrop(spec.size, scale=(0.7, 1.0), interpolation=interp, antialias=True),
                 v2.RandomHorizontalFlip()]
    if augment == "randaugment":  # basic's crop and flip, then RandAugment (2 operations at magnitude 9)
        return v2.Compose(head + crop_flip + [v2.RandAugment(num_ops=2, magnitude=9, interpolation=warp)] + tail)
    if augment == "autoaugment":  # basic's crop and flip, then AutoAugment's ImageNet policy
        return v2.Compose(head + crop_flip + [v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, interpolation=warp)] + tail)
    aug = [v2.RandomResizedCrop(spec.size, scale=(0.25, 1.0), interpolation=interp, antialias=True),
           v2.RandomHorizontalFlip(), v2.TrivialAugmentWide(interpolation=warp)]
    return v2.Compose(head + aug + tail + [v2.RandomErasing(p=0.25)])


class ImagePreprocessing:
    """PIL images or uint8 arrays to normalised tensors of the backbone's size and channels."""

    modality = "image"
    collate: Optional[Callable] = None

    def __init__(self, spec: InputSpec):
        self.spec = spec

    def transform(self, train: bool, augment: str = "none") -> Callable:
        return build_transform(self.spec, augment, train)

    def deterministic(self, augment: str) -> bool:
        """True when the training transform is the eval transform (features may then be cached)."""
        return augment == "none"
