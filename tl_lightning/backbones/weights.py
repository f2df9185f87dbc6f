"""Finding pretrained weights: caches first, network only when it answers.

Model hubs are often unreachable (offline laptops, cluster compute nodes). Rather
than hang inside a download, we look for the file where torchvision or timm caches
it, and when it is absent we probe the host for a few seconds and fail with one line
naming the file expected and the command that fetches it.
"""

import hashlib
import os
import socket
from typing import Dict, Optional
from urllib.parse import urlparse

import torch

from tl_lightning.errors import WeightsError

PROBE_TIMEOUT_S = 3.0
HF_URL = "https://huggingface.co"  # the Hugging Face Hub: models, datasets, uploads


def prefetch_hint(backbone_choice: str) -> str:
    return f"on a machine with internet run: python scripts/prefetch_weights.py {backbone_choice}"


def offline_forced() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("TL_OFFLINE", "HF_HUB_OFFLINE"))


def host_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    if offline_forced():
        return False
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def torch_hub_cache_path(url: str) -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))


def require_download(url: str, expected_path: str, what: str, backbone_choice: str) -> None:
    """Raise WeightsError unless ``url`` can be downloaded now."""
    if not host_reachable(url):
        raise WeightsError(
            f"pretrained weights for {what} are not cached and {urlparse(url).hostname} is unreachable; "
            f"expected {expected_path}; {prefetch_hint(backbone_choice)}"
        )


def unreadable(exc: BaseException) -> str:
    """Why a weights-only ``torch.load`` refused a file, in a few words: a pickle of Python objects (which could run
    code) is named as such, never with torch's hint to load it unsafely."""
    import pickle

    text = str(exc).strip()
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text or "Weights only" in text:
        return ("UnpicklingError: it holds Python objects besides tensors and plain containers (a pickle that could "
                "run code); such files are not loaded")
    return f"{type(exc).__name__}: {text.splitlines()[0].split('. ')[0][:150] if text else 'unreadable'}"


def load_state_dict_file(path: str) -> Dict[str, torch.Tensor]:
    """Read a state dict from a .pth/.pt/.bin/.safetensors file or a Lightning checkpoint."""
    if not os.path.isfile(path):
        raise WeightsError(f"backbone.weights: no such file: {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or not a tensor file
        raise WeightsError(f"backbone.weights: cannot read {path}: {unreadable(exc)}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"backbone.weights: {path} does not hold a state dict (a mapping of names to tensors)")
    return state


def load_into(model: torch.nn.Module, state: Dict[str, torch.Tensor], source: str, arch: str,
              ignore_prefix: Optional[str] = None) -> None:
    """Load ``state`` into ``model`` strictly, with one readable line when it does not fit.

    Keys under ``ignore_prefix`` (the original classifier) may be present or absent.
    """
    own = model.state_dict()
    if ignore_prefix:
        state = {k: v for k, v in state.items() if not k.startswith(ignore_prefix)}
        own = {k: v for k, v in own.items() if not k.startswith(ignore_prefix)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                  if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        details = []
        if mismatched:
            details.append(f"{len(mismatched)} shape mismatches (first: {mismatched[0]})")
        if missing:
            details.append(f"{len(missing)} missing keys (first: {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
        raise WeightsError(f"{source} does not fit architecture {arch}: {'; '.join(details)}")
    model.load_state_dict(state, strict=False)


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over the names, shapes and bytes of ``module``'s state dict (parameters and buffers): what names a
    set of weights (feature-cache keys, the base of an adapter checkpoint)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
