"""``callbacks.saliency``: what the model looks at, once fit ends (docs/diagnostics.md).

Grad-CAM (Selvaraju et al. 2017) through captum's ``LayerGradCam``: the gradient of the predicted class's logit
with respect to the backbone's last spatial feature map, averaged per channel, weights that map's channels; the
positive part of the sum is upsampled to the image. captum rather than the grad-cam package: it needs no OpenCV,
and its Integrated Gradients serve text models the same way.

The layer: the last module of the backbone whose output is a feature map larger than 1x1 (ResNet's layer4,
EfficientNet's final conv block, any timm or torchvision CNN); when that map is smaller than 4x4 (a 64 px image
through a stride-32 network leaves 2x2), the last map of at least 4x4 instead. Each map is scaled to [0, 1]
(minimum to maximum) per image. Vision transformers have tokens, not maps: the
tokens entering the last block (the last block's attention sees them) are reshaped into their patch grid by a
hook, prefix (class) tokens left out, and Grad-CAM runs on that grid.

K fixed validation images per class (the first K of each class in the split's order) go into one PNG,
``<run dir>/saliency.png``: per image the picture and the map over it, titled true / predicted class; it is also
sent to W&B and TensorBoard.
"""

import logging
import math
import os
from typing import Any, Dict, List, Optional, Tuple

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import nn

log = logging.getLogger(__name__)
MIN_MAP = 4  # smallest feature-map side Grad-CAM is drawn from, when the backbone has a larger one


class TokenGrid(nn.Module):
    """Patch tokens (N, T, D) as a map (N, D, h, w); an identity on the values, so a hook can expose it."""

    def __init__(self, prefix: int):
        super().__init__()
        self.prefix = prefix

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, self.prefix:]
        side = math.isqrt(patches.shape[1])
        return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def _vit_entry(model: nn.Module) -> Optional[Tuple[nn.Module, int]]:
    """(the module whose output enters the last transformer block's attention, prefix tokens) for timm and
    torchvision vision transformers; None for other models."""
    blocks = getattr(model, "blocks", None)
    if blocks is not None and hasattr(blocks[-1], "norm1"):  # timm
        return blocks[-1].norm1, int(getattr(model, "num_prefix_tokens", 1))
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layers", None)
    if layers is not None and hasattr(layers[-1], "ln_1"):  # torchvision
        return layers[-1].ln_1, 1
    return None


def target_layer(module, example: torch.Tensor) -> Tuple[nn.Module, Optional[object]]:
    """(the layer Grad-CAM attributes to, a hook handle to remove afterwards or None)."""
    model = module.backbone.model
    vit = _vit_entry(model)
    if vit is not None:
        entry, prefix = vit
        grid = TokenGrid(prefix)

        def expose(_, __, output):
            shaped = grid(output)  # the grid captum hooks; the tokens rebuilt from it, unchanged in value
            return torch.cat([output[:, :prefix], shaped.flatten(2).transpose(1, 2)], dim=1)

        return grid, entry.register_forward_hook(expose)
    order: List[Tuple[nn.Module, int]] = []  # modules with a feature-map output, in the order they finish

    def record(m, _, output):
        if isinstance(output, torch.Tensor) and output.ndim == 4 and min(output.shape[-2:]) > 1:
            order.append((m, min(output.shape[-2:])))

    hooks = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    if not order:
        raise ValueError(f"{type(model).__name__} has no spatial feature map for Grad-CAM")
    # the last map, unless it is smaller than MIN_MAP a side (a small input through a stride-32 network: 64 px
    # gives EfficientNet a 2x2 map): then the last map of at least that size
    large = [m for m, side in order if side >= MIN_MAP]
    return (large[-1] if large and order[-1][1] < MIN_MAP else order[-1][0]), None


def gradcam(module, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(maps in [0, 1] at the images' size, predicted classes) for a batch of preprocessed images."""
    from captum.attr import LayerAttribution, LayerGradCam

    was_training = module.training
    module.eval()
    layer, hook = target_layer(module, images[:1])
    try:
        with torch.no_grad():
            predicted = module(images).argmax(dim=-1)
        with torch.enable_grad():
            cam = LayerGradCam(module, layer).attribute(images.detach().clone().requires_grad_(True),
                                                        target=predicted, relu_attributions=True)
    finally:
        if hook is not None:
            hook.remove()
        module.train(was_training)
    cam = LayerAttribution.interpolate(cam.detach(), tuple(images.shape[-2:]), interpolate_mode="bilinear")[:, 0]
    low, high = cam.flatten(1).min(dim=1).values, cam.flatten(1).max(dim=1).values
    return ((cam - low[:, None, None]) / (high - low).clamp(min=1e-12)[:, None, None]).clamp(0, 1), predicted


def fixed_examples(dataset, num_classes: int, per_class: int) -> List[int]:
    """The first ``per_class`` positions of each class in the split's order."""
    targets = dataset.targets
    chosen: List[int] = []
    for c in range(num_classes):
        chosen += [int(k) for k in (targets == c).nonzero()[0][:per_class]]
    return chosen


class SaliencyGrid(L.Callback):
    def __init__(self, run_dir: str, per_class: int = 2, max_classes: int = 10):
        self.output_dir, self.per_class, self.max_classes = run_dir, per_class, max_classes
        self.path: Optional[str] = None

    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule.unwrapped  # the samples behind cached features or episodes
        dataset = datamodule.datasets["val"]
        classes = min(len(pl_module.class_names), self.max_classes)
        positions = fixed_examples(dataset, classes, self.per_class)
        with pl_module.raw_inputs():  # a linear probe trained on cached features: inputs through the backbone
            if datamodule.modality == "text":
                self.path = os.path.join(self.output_dir, "saliency.html")
                write_text_attributions(pl_module, datamodule, dataset, positions, self.path)
                log.info("Integrated Gradients of %d validation texts in %s", len(positions), self.path)
            else:
                self._images(trainer, pl_module, dataset, positions)

    def summary_sections(self) -> Dict[str, Any]:
        return {"diagnostics": {"saliency": self.path}}

    def _images(self, trainer, pl_module, dataset, positions) -> None:
        batch = torch.stack([dataset[k]["inputs"] for k in positions]).to(pl_module.device)
        targets = [int(dataset[k]["target"]) for k in positions]
        maps, predicted = gradcam(pl_module, batch)
        self.path = os.path.join(self.output_dir, "saliency.png")
        figure = draw(batch.cpu(), maps.cpu(), targets, predicted.cpu().tolist(), pl_module.class_names,
                      pl_module.backbone.input_spec, self.per_class)
        os.makedirs(self.output_dir, exist_ok=True)
        figure.savefig(self.path, dpi=80)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="val/saliency", images=[figure])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("val/saliency", figure, global_step=trainer.global_step)
        import matplotlib.pyplot as plt

        plt.close(figure)
        log.info("Grad-CAM of %d validation images in %s", len(positions), self.path)


def draw(images, maps, targets, predicted, class_names, spec, per_class: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    columns = 2 * per_class
    rows = math.ceil(len(images) / per_class)
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (image, cam) in enumerate(zip(images, maps)):
        picture = (image * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
        picture = picture[..., 0] if picture.shape[-1] == 1 else picture
        row, col = divmod(k, per_class)
        ok = targets[k] == predicted[k]
        left, right = axes[row][2 * col], axes[row][2 * col + 1]
        left.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        left.set_title(f"{class_names[targets[k]]}"[:14], fontsize=7)
        right.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        right.imshow(cam.numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        right.set_title(f"-> {class_names[predicted[k]]}"[:14], fontsize=7, color="black" if ok else "red")
    figure.suptitle("Grad-CAM: validation image | map over it, titled true -> predicted class", fontsize=8)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.3 / rows))  # room for the title above the first row
    return figure


def token_attributions(module, inputs, steps: int = 32):
    """(attribution per token, summed over the embedding and scaled to [-1, 1] per text; predicted classes):
    Integrated Gradients of the predicted class's logit on the word embeddings, from an all-padding baseline."""
    from captum.attr import LayerIntegratedGradients

    encoder = module.backbone.model.encoder
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    was_training = module.training
    module.eval()
    try:
        def logits(input_ids, attention_mask):
            return module({"input_ids": input_ids, "attention_mask": attention_mask})

        with torch.no_grad():
            predicted = logits(ids, mask).argmax(dim=-1)
        pad = encoder.config.pad_token_id or 0
        baseline = torch.where(mask.bool(), torch.full_like(ids, pad), ids)
        with torch.enable_grad():
            attr = LayerIntegratedGradients(logits, encoder.get_input_embeddings()).attribute(
                ids, baselines=baseline, target=predicted, additional_forward_args=(mask,), n_steps=steps)
    finally:
        module.train(was_training)
    scores = attr.sum(dim=-1) * mask
    return scores / scores.abs().amax(dim=1, keepdim=True).clamp(min=1e-12), predicted


def write_text_attributions(module, datamodule, dataset, positions, path: str) -> None:
    """One HTML page: per text, its true and predicted class and its tokens shaded by attribution (green: for
    the predicted class, red: against)."""
    import html

    batch = datamodule.preprocessing.collate([dataset[k] for k in positions])
    inputs = {k: v.to(module.device) for k, v in batch["inputs"].items()}
    scores, predicted = token_attributions(module, inputs)
    tokenizer = datamodule.preprocessing.tokenizer
    rows = []
    for row in range(len(positions)):
        n = int(inputs["attention_mask"][row].sum())
        tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][row, :n].tolist())
        spans = []
        for token, score in zip(tokens, scores[row, :n].tolist()):
            colour = f"rgba(0,160,0,{score:.2f})" if score > 0 else f"rgba(220,0,0,{-score:.2f})"
            spans.append(f'<span style="background:{colour}" title="{score:+.2f}">{html.escape(token)}</span>')
        true, pred = module.class_names[int(batch["target"][row])], module.class_names[int(predicted[row])]
        mark = "" if true == pred else ' style="color:red"'
        rows.append(f"<p><b{mark}>{html.escape(true)} &rarr; {html.escape(pred)}</b><br>{' '.join(spans)}</p>")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("<html><meta charset='utf-8'><body style='font-family:sans-serif;max-width:60em'>"
                 "<h3>Integrated Gradients on the word embeddings: true &rarr; predicted class; green tokens "
                 "push towards the prediction, red away</h3>" + "\n".join(rows) + "</body></html>\n")
