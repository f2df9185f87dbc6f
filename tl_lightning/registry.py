"""One registry pattern for everything chosen by name: backbones, datamodules, strategies, criteria, loss terms.

    STRATEGIES = Registry("strategy", "strategy.name", package="tl_lightning.strategies")

    @STRATEGIES.register("ewc")
    class EWC(Strategy): ...

``register`` is a decorator; ``add_lazy`` names an entry as ``"module:attribute"`` that is imported on first use
(backbone kinds: the config check lists them without importing torch). A lookup that misses imports the
registry's package once, module by module, so an entry in a new file of that package is found with no table to
edit; an entry registered from anywhere else (a test, a user's module) is found as soon as it is registered.
This module imports nothing heavy: the config check reads ``names()`` before torch is imported.
"""

import importlib
import pkgutil
from typing import Any, Callable, Dict, List, Optional

from tl_lightning.errors import unknown_name


class Registry:
    def __init__(self, kind: str, key: str, package: Optional[str] = None):
        self.kind, self.key, self.package = kind, key, package  # key: the config key that names an entry
        self._entries: Dict[str, Any] = {}
        self._lazy: Dict[str, str] = {}
        self._discovered = package is None

    def register(self, name: Optional[str] = None) -> Callable[[Any], Any]:
        """Decorator: register the decorated class or function under ``name`` (default: its ``name``)."""
        def decorate(obj):
            self._entries[name or obj.name] = obj
            return obj
        return decorate

    def add_lazy(self, name: str, target: str) -> None:
        self._lazy[name] = target

    def remove(self, name: str) -> None:
        """Forget an entry (tests that register one of their own take it back)."""
        self._entries.pop(name, None)
        self._lazy.pop(name, None)

    def names(self, discover: bool = False) -> List[str]:
        """Every name known now (``discover``: after importing the package's modules)."""
        if discover:
            self._discover()
        return sorted({*self._entries, *self._lazy})

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._lazy

    def get(self, name: str) -> Any:
        if name not in self:
            self._discover()
        if name in self._entries:
            return self._entries[name]
        if name in self._lazy:
            module, attribute = self._lazy[name].split(":")
            self._entries[name] = getattr(importlib.import_module(module), attribute)
            return self._entries[name]
        raise unknown_name(self.kind, name, self.names(), self.key)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{info.name}")


# The registries. Each entry registers itself in its own file; the packages are imported on a miss.
# Backbone kinds are lazy entries, listed here so that the config check knows them without importing torch: the
# one place that knows which library builds which backbone.
BACKBONES = Registry("backbone kind", "backbone.kind")
for _kind, _target in {
    "torchvision": "tl_lightning.backbones.torchvision_backbones:build_torchvision",
    "timm": "tl_lightning.backbones.timm_backbones:build_timm",
    "efficientnet_lite0": "tl_lightning.backbones.timm_backbones:build_efficientnet_lite0",
    "checkpoint": "tl_lightning.inference:build_from_checkpoint",  # a harness checkpoint's inference model
    "hf": "tl_lightning.backbones.text_backbones:build_hf",
    "minilm": "tl_lightning.backbones.text_backbones:build_minilm",
}.items():
    BACKBONES.add_lazy(_kind, _target)
TEXT_KINDS = ("hf", "minilm")  # the others take images (checkpoint: whatever its recorded architecture takes)
DATAMODULES = Registry("dataset", "data.name", package="tl_lightning.data")
STRATEGIES = Registry("strategy", "strategy.name", package="tl_lightning.strategies")
CRITERIA = Registry("loss", "loss.name", package="tl_lightning.losses")
LOSS_TERMS = Registry("loss term kind", "loss.terms.<name>.kind", package="tl_lightning.losses")
