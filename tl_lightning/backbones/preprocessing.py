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


BATCHED_AUGMENT = ("none", "basic")  # training augmentations a decoded-sample cache applies to whole batches
CROP_MARGIN = 8 / 7  # a cached training image's side over the input size: room for basic's random crops (256/224)


def decode_transform(spec: InputSpec, side: int) -> v2.Compose:
    """A raw sample to what the decoded-sample cache keeps: uint8, the backbone's channels, the shorter side resized
    to ``side`` and centre-cropped to a square. At ``side == spec.size`` it is the eval transform up to its float
    steps, so evaluating from the cache gives the same inputs bit for bit."""
    interp = InterpolationMode(spec.interpolation)
    return v2.Compose([v2.ToImage(), ToChannels(spec.channels), v2.Resize(side, interpolation=interp, antialias=True),
                       v2.CenterCrop(side)])


class BatchInputs:
    """A cached batch (uint8, N x C x side x side, on the training device) to model input. A batch wider than the
    input size is a training batch of data.augment=basic: a random resized crop and flip per sample (kornia) cut it
    to size; then every batch is scaled to [0, 1] and normalised, as the per-sample transform's last steps do."""

    def __init__(self, spec: InputSpec):
        self.spec = spec
        self._crop = None

    def crop(self):
        if self._crop is None:
            import kornia.augmentation as K

            resample = "nearest" if self.spec.interpolation == "nearest" else "bilinear"
            self._crop = K.AugmentationSequential(
                K.RandomResizedCrop((self.spec.size, self.spec.size), scale=(0.7, 1.0), resample=resample),
                K.RandomHorizontalFlip())
        return self._crop

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = v2.functional.to_dtype(images, torch.float32, scale=True)  # the per-sample transform's own functions:
        if x.shape[-1] != self.spec.size:  # evaluation from the cache is bit-exact
            x = self.crop().to(x.device)(x)
        return v2.functional.normalize(x, mean=list(self.spec.mean), std=list(self.spec.std))


class ImagePreprocessing:
    """PIL images or uint8 arrays to normalised tensors of the backbone's size and channels."""

    modality = "image"
    collate: Optional[Callable] = None

    def __init__(self, spec: InputSpec):
        self.spec = spec
        self.batch_inputs = BatchInputs(spec)  # cached uint8 batches to model input, on the device

    def transform(self, train: bool, augment: str = "none") -> Callable:
        return build_transform(self.spec, augment, train)

    def cached_side(self, train: bool, augment: str = "none") -> int:
        """The side at which the decoded-sample cache keeps a split's images: the input size, with a margin for
        the random crops of a training split that basic augments on whole batches."""
        if train and augment != "none":
            return round(self.spec.size * CROP_MARGIN)
        return self.spec.size

    def decode_transform(self, side: int) -> Callable:
        return decode_transform(self.spec, side)

    def cached_transform(self, train: bool, augment: str = "none") -> Optional[Callable]:
        """Per sample, on a cached uint8 image: None where the batch does the rest (BatchInputs: eval, none,
        basic); the full per-sample training transform for the other policies (strong, randaugment, autoaugment),
        which then only skip decoding and the first resize."""
        if not train or augment in BATCHED_AUGMENT:
            return None
        return build_transform(self.spec, augment, train)

    def deterministic(self, augment: str) -> bool:
        """True when the training transform is the eval transform (features may then be cached)."""
        return augment == "none"
