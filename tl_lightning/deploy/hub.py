"""Models as Hugging Face Hub folders: ``tl-export format=hf`` writes one, and every entry point that takes a
checkpoint (``tl-eval``, ``tl-predict``, ``tl-export``, ``backbone=checkpoint``) reads one back.

A folder holds:

- ``model.safetensors``: the inference model's tensors (``backbone.*`` and ``head.*``; adapters merged), read
  without running any code;
- ``config.json``: what rebuilds it. ``tl_lightning`` is the checkpoint's record (architecture, input spec, class
  names, head, the run's config) so the harness rebuilds exactly its model; ``rebuild`` says the same for someone
  without the harness (the library, the architecture and its arguments, the tensor prefix, the head and the
  input); ``id2label`` / ``label2id`` as Hugging Face configs have them;
- the tokenizer's files for a text model;
- ``README.md``, the model card (tl_lightning/deploy/card.py);
- ``export.json``, the check that the folder gives the checkpoint's logits exactly.
"""

import json
import os
from typing import Any, Dict

import torch

from tl_lightning.backbones.model_folder import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE
from tl_lightning.backbones.weights import HF_URL, host_reachable


def folder_state(model) -> Dict[str, torch.Tensor]:
    """The inference model's tensors under the names a checkpoint's state dict gives them."""
    state = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
    state.update({f"head.{k}": v for k, v in model.head.state_dict().items()})
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def rebuild_section(model) -> Dict[str, Any]:
    """How to rebuild the network with its own library, without the harness."""
    arch, backbone = model.backbone.arch, model.backbone
    linear = model.head[-1]
    head = {"type": "linear", "in_features": linear.in_features, "out_features": linear.out_features,
            "dropout": float(model.head[0].p) if isinstance(model.head[0], torch.nn.Dropout) else 0.0,
            "tensor_prefix": "head.1.", "input": "the backbone's features"}
    out: Dict[str, Any] = {"head": head}
    inner = backbone.model
    if model.preprocessing.modality == "text":
        encoder = inner.encoder
        out.update(library="transformers", model_type=encoder.config.model_type,
                   config=encoder.config.to_dict(), tensor_prefix="backbone.model.encoder.",
                   features=f"{inner.pooling} pooling of last_hidden_state" +
                            (" over the attention mask" if inner.pooling == "mean" else " (first token)"),
                   how="AutoModel.from_config(AutoConfig.for_model(**config)); load the tensors under tensor_prefix")
        return out
    spec = model.input_spec
    out["input"] = {"size": spec.size, "channels": spec.channels, "mean": list(spec.mean), "std": list(spec.std),
                    "interpolation": spec.interpolation, "layout": "NCHW float32, resized to size then normalised"}
    pretrained_cfg = getattr(inner, "pretrained_cfg", None)
    if pretrained_cfg is not None:  # a timm model (kinds timm and efficientnet_lite0)
        kwargs = {"num_classes": 0, "in_chans": spec.channels}
        if "img_size" in getattr(inner, "default_cfg", {}) or hasattr(inner, "patch_embed"):
            kwargs["img_size"] = spec.size
        out.update(library="timm", model_name=pretrained_cfg.get("architecture") or arch.get("name"),
                   create_kwargs=kwargs, tensor_prefix="backbone.model.",
                   how="timm.create_model(model_name, **create_kwargs); load the tensors under tensor_prefix")
    else:
        out.update(library="torchvision", model_name=arch.get("name"), tensor_prefix="backbone.model.",
                   how="torchvision.models.get_model(model_name) with its classifier replaced by Identity; "
                       "load the tensors under tensor_prefix")
    return out


def folder_config(model) -> Dict[str, Any]:
    record = model.record
    keep = ("config", "class_names", "architecture", "input_spec", "head_dropout", "strategy")
    own = {k: record.get(k) for k in keep}
    own["class_names"] = list(model.class_names)
    own["architecture"] = dict(model.backbone.arch)
    own["input_spec"] = dict(model.input_spec.__dict__)
    own["format_version"] = FORMAT_VERSION
    if record.get("adapter"):
        own["merged_adapter"] = {k: v for k, v in record["adapter"].items() if k != "targets"}
    return {
        "library_name": "tl-lightning",
        "modality": model.preprocessing.modality,
        "num_labels": len(model.class_names),
        "id2label": {str(i): n for i, n in enumerate(model.class_names)},
        "label2id": {n: i for i, n in enumerate(model.class_names)},
        "rebuild": rebuild_section(model),
        "tl_lightning": json.loads(json.dumps(own, default=str)),
    }


def write_model_folder(model, folder: str, card: str) -> None:
    """Weights, config, tokenizer and card into ``folder`` (an empty temporary folder of the export)."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    save_file(folder_state(model), os.path.join(folder, WEIGHTS_FILE), metadata={"format": "pt"})
    with open(os.path.join(folder, CONFIG_FILE), "w", encoding="utf-8") as fh:
        json.dump(folder_config(model), fh, indent=2)
    if model.preprocessing.modality == "text":
        model.preprocessing.tokenizer.save_pretrained(folder)
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(card)
    umask = os.umask(0)
    os.umask(umask)
    for name in os.listdir(folder):  # as any file written here (safetensors writes its file 0600)
        os.chmod(os.path.join(folder, name), 0o666 & ~umask)


def check_push(cfg) -> None:
    """push=true: a repo id, and the Hub reachable now (else one line, before anything is written)."""
    from tl_lightning.errors import ConfigError

    if not cfg.push:
        if cfg.repo_id:
            raise ConfigError(f"repo_id={cfg.repo_id} is where push=true uploads; add push=true (format=hf)")
        return
    if cfg.format != "hf":
        raise ConfigError(f"push=true uploads a Hub folder: use format=hf (not format={cfg.format})")
    if not cfg.repo_id or cfg.repo_id.count("/") != 1:
        raise ConfigError(f"push=true needs repo_id=<user or org>/<model name>, got {cfg.repo_id!r}")
    if not host_reachable(HF_URL):
        raise ConfigError(f"push=true: huggingface.co is unreachable from here (offline?); nothing was written. "
                          f"Export without push, then upload the folder where there is internet: "
                          f"huggingface-cli upload {cfg.repo_id} <folder>")


def push_folder(folder: str, repo_id: str, private: bool) -> str:
    """Upload the folder as one commit (all files or none); returns the repo's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from tl_lightning.errors import WriteError

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="model",
                          commit_message="Upload a model exported by tl-lightning")
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise WriteError(f"push to {repo_id} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); the "
                         f"folder {folder} is complete: upload it with huggingface-cli upload {repo_id} {folder}") from None
    return f"{HF_URL}/{repo_id}"
