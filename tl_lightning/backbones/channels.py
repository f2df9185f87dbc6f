"""``backbone.in_chans``: feed N-channel images (1 = grayscale) to a backbone pretrained on RGB.

The first convolution's pretrained weights are adapted with timm's ``adapt_input_conv`` (1 channel: the sum
over RGB; N channels: RGB repeated and scaled by 3/N), for timm and torchvision models alike, and the input
spec's mean/std follow (1 channel: the mean of the RGB values). With equal per-channel mean/std (e.g.
EfficientNet-Lite0's 0.5) a 1-channel image gives exactly the output its 3-channel replication gives.
"""

from dataclasses import replace
from typing import Optional

from torch import nn

from tl_lightning.backbones.preprocessing import InputSpec
from tl_lightning.errors import ConfigError


def first_conv(model: nn.Module, name: Optional[str] = None):
    """The model's input convolution: ``name`` (timm's
    ``pretrained_cfg['first_conv']``) when given, else the first Conv2d in module order."""
    if name:
        path = name[: -len(".weight")] if name.endswith(".weight") else name
        return model.get_submodule(path)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ConfigError(f"backbone.in_chans: {type(model).__name__} has no input convolution to adapt")


def adapt_input_channels(model: nn.Module, in_chans: int, name: str, first_conv_name: Optional[str] = None) -> None:
    """Replace the model's input convolution by one taking ``in_chans`` channels, its weights adapted."""
    from timm.models import adapt_input_conv

    conv = first_conv(model, first_conv_name)
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        raise ConfigError(f"backbone.in_chans: the input layer of {name} ({type(conv).__name__}) cannot be adapted; "
                          "use backbone.in_chans=null (3 channels)")
    if conv.in_channels == in_chans:
        return
    # the module stays (its class may pad or compute differently, e.g. timm's TF-"same" Conv2dSame); its weight
    # becomes a new parameter of the adapted shape
    conv.weight = nn.Parameter(adapt_input_conv(in_chans, conv.weight.detach(), base_chans=conv.in_channels).clone())
    conv.in_channels = in_chans


def spec_for_channels(spec: InputSpec, in_chans: int) -> InputSpec:
    """The input spec of the adapted model: mean/std averaged for 1 channel, cycled for more than 3."""
    if in_chans == spec.channels:
        return spec
    if in_chans == 1:
        mean, std = (sum(spec.mean) / len(spec.mean),), (sum(spec.std) / len(spec.std),)
    else:
        mean = tuple(spec.mean[i % len(spec.mean)] for i in range(in_chans))
        std = tuple(spec.std[i % len(spec.std)] for i in range(in_chans))
    return replace(spec, channels=in_chans, mean=mean, std=std)
