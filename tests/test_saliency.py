"""Grad-CAM (issue: diagnostics): the map follows the evidence, for CNNs and vision transformers (the callback's
grid on a real run: tests/test_runs.py's linear probe; text attributions: tests/test_text.py)."""

import pytest
import torch
from torch import nn

from tl_lightning.callbacks.saliency import TokenGrid, gradcam, target_layer


class Quadrants(nn.Module):
    """A hand-made model: its feature map is the image; class 0's logit sums the top-left quadrant, class 1's
    the bottom-right."""

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(conv.weight)
        self.backbone = nn.Module()
        self.backbone.model = nn.Sequential(conv)
        mask = torch.zeros(2, 16, 16)
        mask[0, :8, :8], mask[1, 8:, 8:] = 1, 1
        self.register_buffer("mask", mask)

    def forward(self, x):
        return (self.backbone.model(x) * self.mask).flatten(2).sum(-1)


def test_gradcam_lights_up_where_the_predicted_class_looks():
    images = torch.zeros(2, 1, 16, 16)
    images[0, 0, 2:6, 2:6] = 1.0  # evidence for class 0, top left
    images[1, 0, 10:14, 9:13] = 1.0  # for class 1, bottom right
    maps, predicted = gradcam(Quadrants(), images)
    assert predicted.tolist() == [0, 1] and maps.shape == (2, 16, 16)
    assert maps[0, 2:6, 2:6].mean() > 0.9 and maps[0, 8:, 8:].max() == 0
    assert maps[1, 10:14, 9:13].mean() > 0.9 and maps[1, :8, :8].max() == 0


def test_a_vision_transformers_tokens_become_their_patch_grid():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=0)
    module = nn.Module()
    module.backbone = nn.Module()
    module.backbone.model = vit
    head = nn.Linear(vit.num_features, 3)
    module.forward = lambda x: head(vit(x))  # noqa: E731
    layer, hook = target_layer(module, torch.randn(1, 3, 32, 32))
    assert isinstance(layer, TokenGrid) and layer.prefix == 1 and hook is not None
    hook.remove()
    maps, predicted = gradcam(module, torch.randn(3, 3, 32, 32))
    assert maps.shape == (3, 32, 32) and predicted.shape == (3,) and torch.isfinite(maps).all()
    tokens = torch.arange(2 * 5 * 4, dtype=torch.float32).reshape(2, 5, 4)  # a class token and 2x2 patches
    grid = TokenGrid(1)(tokens)
    assert grid.shape == (2, 4, 2, 2) and torch.equal(grid[0, :, 0, 1], tokens[0, 2])


@pytest.mark.parametrize("overrides,message", [
    (["callbacks.collapse.max_tv=1.5"], "'callbacks.collapse.max_tv': a total-variation distance in (0, 1]"),
    (["callbacks.plateau.patience=0"], "callbacks.plateau.patience"),
    (["callbacks.saliency.per_class=0"], "callbacks.saliency.per_class"),
])
def test_diagnostic_callback_mistakes_are_one_line(compose, overrides, message):
    from tl_lightning.config.validate import validate_config
    from tl_lightning.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        validate_config(compose(overrides))
    assert message in str(info.value) and "\n" not in str(info.value)
