"""The backbone contract: a feature extractor, its preprocessing and its layer groups."""

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torch import nn

from tl_lightning.backbones.preprocessing import ImagePreprocessing, InputSpec


@dataclass
class LayerGroup:
    """A named, contiguous slice of the backbone (stem, a stage, ...), input to output."""

    name: str
    param_names: List[str] = field(default_factory=list)
    params: List[nn.Parameter] = field(default_factory=list)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.params)


class Backbone(nn.Module):
    """Model inputs (images, or a mapping of token tensors) to a feature vector of size ``feature_dim``.

    ``preprocessing`` turns raw samples into those inputs; ``arch`` is what rebuilds the architecture
    (the registry's kind and name); ``source_task`` is set for backbones taken from a harness checkpoint.
    """

    def __init__(self, model: nn.Module, feature_dim: int, input_spec: InputSpec, layer_groups: List[LayerGroup],
                 name: str, preprocessing: Optional[Any] = None):
        super().__init__()
        self.model = model
        self.feature_dim = feature_dim
        self.input_spec = input_spec
        self.layer_groups = layer_groups
        self.name = name
        self.preprocessing = preprocessing or ImagePreprocessing(input_spec)
        self.arch: Dict[str, Any] = {}
        self.source_task = None

    def forward(self, x):
        return self.model(x)


def group_by_patterns(model: nn.Module, patterns: Sequence[Tuple[str, str]]) -> List[LayerGroup]:
    """Split ``model``'s parameters into ordered groups by name regex.

    Each parameter goes to the first pattern it matches; a parameter that matches
    none is a bug in the pattern table, so it raises rather than being dropped.
    """
    groups = [LayerGroup(name) for name, _ in patterns]
    compiled = [re.compile(rx) for _, rx in patterns]
    for pname, param in model.named_parameters():
        for group, rx in zip(groups, compiled):
            if rx.match(pname):
                group.param_names.append(pname)
                group.params.append(param)
                break
        else:
            raise RuntimeError(f"parameter '{pname}' matches no layer group of {type(model).__name__}")
    return [g for g in groups if g.params]


def groups_from_name_lists(model: nn.Module, named_lists: Sequence[Tuple[str, Sequence[str]]]) -> List[LayerGroup]:
    params = dict(model.named_parameters())
    return [LayerGroup(name, list(names), [params[n] for n in names]) for name, names in named_lists if names]
