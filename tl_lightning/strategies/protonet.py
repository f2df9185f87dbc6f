"""Prototypical networks (Snell et al. 2017): episodic N-way K-shot training, nearest-class-mean classification.

Training batches are episodes drawn from the source classes (``strategy.source_classes``; by default the
dataset's classes that ``data.classes`` leaves out): the loss is cross-entropy over negative squared
distances of the queries to the support means, times a learnt metric scale s. The target is then classified by
the nearest mean of its labelled budget (the support set), written into the ordinary linear head: with
prototype c_k, -s ||f - c_k||^2 = s (2 c_k.f - ||c_k||^2) - s ||f||^2, and the last term is the same for every
class, so a head with weights 2 s c_k and biases -s ||c_k||^2 gives the same softmax. Checkpoints, eval,
predict and export therefore need nothing special. After testing, ``strategy.eval_episodes`` few-shot
episodes on the target's test split score the nearest mean and a logistic-regression probe on the same
support sets, with the meta-trained and the initial backbone (mean accuracy with a 95 % confidence interval).
"""

import copy
import logging
from typing import Any, Dict, List, Optional

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from tl_lightning.batch import collect, in_memory_format
from tl_lightning.data.episodes import EpisodicDataModule, episode_indices
from tl_lightning.data.registry import build_datamodule
from tl_lightning.errors import ConfigError
from tl_lightning.registry import STRATEGIES
from tl_lightning.strategies.base import Strategy, set_trainable
from tl_lightning.strategies.capabilities import OwnTrainingLoss, WrapsData

log = logging.getLogger(__name__)


@STRATEGIES.register()
class ProtoNet(Strategy, OwnTrainingLoss, WrapsData):
    name = "protonet"

    def __init__(self, cfg, context=None):
        super().__init__(cfg, context)
        self.initial = None  # the backbone as training starts: the few-shot baseline without meta-training
        self.episodes_from = ""
        self.episode_shape = (cfg.ways, cfg.shots, cfg.queries)

    def module_parameters(self) -> Dict[str, torch.nn.Parameter]:
        # metric scaling (Oreshkin et al. 2018): logits = -exp(s) * squared distance, s learnt; set from the first
        # episode so that pretrained features' large distances do not start with a loss of ~20 that wrecks them
        return {"metric_log_scale": torch.nn.Parameter(torch.zeros(()))}

    def setup(self, module) -> None:
        self.initial = copy.deepcopy(module.backbone).eval()
        self.scale_set = False
        self.restore(module)

    def restore(self, module) -> None:
        set_trainable(module.backbone, True)
        set_trainable(module.head, False)  # the head holds the prototypes; it is set, never trained
        self.freeze_norms(module)

    def param_groups(self, module):
        return self.backbone_groups(module) + [{"name": "metric_scale", "params": [module.metric_log_scale],
                                                "lr": self.cfg.lr}]

    # episodes
    def wrap_datamodule(self, datamodule, module):

        cfg = self.cfg
        budget = datamodule.cfg.samples_per_class
        eval_ways = cfg.eval_ways or datamodule.num_classes
        if eval_ways > datamodule.num_classes:
            raise ConfigError(f"config key 'strategy.eval_ways': {eval_ways} ways but the target has "
                              f"{datamodule.num_classes} classes ({', '.join(datamodule.class_names)}); use at most "
                              f"{datamodule.num_classes}")
        test_smallest = min(datamodule.split_info["class_counts"]["test"])
        if cfg.eval_episodes and test_smallest < (budget or cfg.shots) + 1:
            raise ConfigError(f"config key 'strategy.eval_episodes': the test split has {test_smallest} samples in a "
                              f"class, too few for {budget or cfg.shots} shots and a query; raise data.eval_per_class or "
                              "set strategy.eval_episodes=0")
        source = self._source_split(datamodule)
        if source is None:  # no source classes: episodes from the target's own labelled budget
            if budget is None or budget < 2:
                raise ConfigError("strategy=protonet: data.classes leaves no source classes to train episodes on, and "
                                  f"data.samples_per_class={budget} is too few to split into support and query; hold "
                                  "out classes (e.g. data.classes=[5,6,7,8,9]) or set strategy.source_classes")
            source = datamodule.datasets["train"]
            shots = max(1, min(cfg.shots, budget - 1))
            ways, queries = min(cfg.ways, datamodule.num_classes), budget - shots
            self.episodes_from = "target labelled budget"
        else:
            ways, shots, queries = cfg.ways, cfg.shots, cfg.queries
        labels = source.targets
        n_classes = len(np.unique(labels))
        if ways > n_classes:
            raise ConfigError(f"config key 'strategy.ways': {ways}-way episodes but the episodes' source "
                              f"({self.episodes_from}) has {n_classes} classes; use at most {n_classes}")
        smallest = int(np.bincount(labels).min(initial=10**9) if len(labels) else 0)
        if shots + queries > smallest:
            raise ConfigError(f"strategy=protonet: episodes need {shots} shots + {queries} queries per class but a class "
                              f"of the episodes' source ({self.episodes_from}) has {smallest} samples; lower "
                              "strategy.shots or strategy.queries")
        self.episode_shape = (ways, shots, queries)
        log.info("protonet: %d episodes per epoch, %d-way %d-shot %d-query, from %s", cfg.episodes_per_epoch, ways,
                 shots, queries, self.episodes_from)
        return EpisodicDataModule(datamodule, source, self.episode_shape, cfg.episodes_per_epoch)

    def _source_split(self, datamodule):
        """The training split of the source classes (all their samples, unless strategy.source_per_class)."""
        data_cfg = datamodule.cfg
        kept = list(datamodule.split_info["kept_class_ids"])
        full = OmegaConf.merge(data_cfg, {"classes": None, "samples_per_class": None, "eval_per_class": 1,
                                          "imbalance": {"ratio": None, "counts": None}})
        if self.cfg.source_classes is None:
            names = datamodule.load().class_names  # every class of the dataset, before data.classes
            source_ids: List[Any] = [i for i in range(len(names)) if i not in kept]
            if not source_ids:
                return None
        else:
            source_ids = list(self.cfg.source_classes)
        source_dm = build_datamodule(OmegaConf.merge(full, {"classes": source_ids,
                                                            "samples_per_class": self.cfg.source_per_class}),
                                     datamodule.preprocessing, self.context.paths)
        source_dm.setup("fit")
        overlap = sorted(set(source_dm.split_info["kept_class_ids"]) & set(kept))
        if overlap:
            raise ConfigError(f"config key 'strategy.source_classes': classes {overlap} are also target classes "
                              "(data.classes); few-shot evaluation needs held-out classes, so keep them disjoint")
        self.episodes_from = f"source classes {', '.join(source_dm.class_names)}"
        return source_dm.datasets["train"]

    def training_loss(self, module, batch) -> Dict[str, torch.Tensor]:
        ways, shots, queries = self.episode_shape
        features = module.features(batch["inputs"])
        support, query = features[: ways * shots], features[ways * shots:]
        prototypes = support.reshape(ways, shots, -1).mean(1)
        distances = torch.cdist(query, prototypes) ** 2
        if not self.scale_set:  # the first episode's mean distance becomes 10 logit units
            with torch.no_grad():
                mean = distances.mean()
                if torch.distributed.is_available() and torch.distributed.is_initialized():  # one value on every rank
                    torch.distributed.all_reduce(mean)
                    mean /= torch.distributed.get_world_size()
                module.metric_log_scale.fill_(float(torch.log(10.0 / mean.clamp(min=1e-6))))
            self.scale_set = True
        logits = -module.metric_log_scale.exp() * distances
        target = torch.arange(ways, device=logits.device).repeat_interleave(queries)
        return {"loss": F.cross_entropy(logits, target), "acc": (logits.argmax(-1) == target).float().mean()}

    def callbacks(self) -> list:
        return [PrototypeHead(self)] + ([FewShotEvaluation(self)] if self.cfg.eval_episodes else [])

    def set_prototypes(self, module, datamodule) -> None:
        """The head from the nearest-mean rule on the target's labelled budget (eval transform, eval mode)."""
        features, labels = embed(module.backbone, datamodule.plain_loader("train", batch_size=64), module.channels_last)
        head = module.head[-1]
        prototypes = torch.stack([features[labels == c].mean(0) for c in range(head.out_features)])
        weight, bias = prototype_head(prototypes, float(module.metric_log_scale.detach().exp()))
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias)

    def state_dict(self) -> Dict[str, Any]:
        return {"episodes_from": self.episodes_from, "episode_shape": list(self.episode_shape), "scale_set": self.scale_set}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.scale_set = bool(state.get("scale_set", False))

    def summary_info(self) -> Dict[str, Any]:
        return {"episodes_from": self.episodes_from, "episode_shape": list(self.episode_shape)}

    # few-shot evaluation
    def fewshot_evaluation(self, module, datamodule) -> Dict[str, Any]:
        cfg = self.cfg
        from sklearn.linear_model import LogisticRegression

        loader = datamodule.plain_loader("test", batch_size=100)
        trained, labels = embed(module.backbone, loader, module.channels_last)
        initial, _ = embed(self.initial.to(module.device), loader, module.channels_last)
        ways = cfg.eval_ways or datamodule.num_classes
        shots = datamodule.cfg.samples_per_class or cfg.shots
        labels_np = labels.numpy()
        by_class = {c: np.flatnonzero(labels_np == c) for c in range(datamodule.num_classes)}
        smallest = min(len(v) for v in by_class.values())
        queries = min(cfg.eval_queries, smallest - shots)  # >= 1: checked before training
        rng = np.random.default_rng([datamodule.cfg.seed, 600])
        scores: Dict[str, List[float]] = {k: [] for k in ("protonet", "probe", "initial_protonet", "initial_probe")}
        for _ in range(cfg.eval_episodes):
            idx = np.asarray(episode_indices(rng, by_class, sorted(by_class), ways, shots, queries))
            support, query = idx[: ways * shots], idx[ways * shots:]
            y_support = np.repeat(np.arange(ways), shots)
            y_query = np.repeat(np.arange(ways), queries)
            for prefix, feats in (("", trained), ("initial_", initial)):
                xs, xq = feats[support], feats[query]
                prototypes = xs.reshape(ways, shots, -1).mean(1)
                scores[prefix + "protonet"].append(float(((-torch.cdist(xq, prototypes)).argmax(-1).numpy() == y_query).mean()))
                probe = LogisticRegression(max_iter=1000).fit(xs.numpy(), y_support)
                scores[prefix + "probe"].append(float((probe.predict(xq.numpy()) == y_query).mean()))
        out: Dict[str, Any] = {"episodes": cfg.eval_episodes, "ways": ways, "shots": shots, "queries": queries}
        for name, values in scores.items():
            v = np.asarray(values)
            out[name] = {"mean": float(v.mean()), "ci95": float(1.96 * v.std(ddof=1) / np.sqrt(len(v)))}
        log.info("few-shot, %d episodes of %d-way %d-shot: protonet %.1f +- %.1f %%, probe on the same support %.1f +- "
                 "%.1f %% (initial backbone: %.1f / %.1f %%)", cfg.eval_episodes, ways, shots,
                 100 * out["protonet"]["mean"], 100 * out["protonet"]["ci95"], 100 * out["probe"]["mean"],
                 100 * out["probe"]["ci95"], 100 * out["initial_protonet"]["mean"], 100 * out["initial_probe"]["mean"])
        return out


def prototype_head(prototypes: torch.Tensor, scale: float = 1.0):
    """Linear weights and biases whose logits are scale * (-||f - c_k||^2 + ||f||^2): the nearest-mean rule's
    softmax at that metric scale."""
    return 2 * scale * prototypes, -scale * (prototypes ** 2).sum(1)


def embed(backbone, loader, channels_last: bool = False):
    """Features and labels of a loader on the backbone's device (eval mode, no grad; modes restored after)."""
    out = collect(lambda batch: backbone(in_memory_format(batch["inputs"], channels_last)), loader, [backbone])
    return out["outputs"], out["target"]


class PrototypeHead(L.Callback):
    """Before every validation (and before fit, for the sanity check): the head from the target's prototypes."""

    def __init__(self, strategy: ProtoNet):
        self.strategy = strategy

    def _set(self, trainer, pl_module) -> None:
        self.strategy.set_prototypes(pl_module, trainer.datamodule.unwrapped)

    def on_fit_start(self, trainer, pl_module) -> None:
        self._set(trainer, pl_module)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._set(trainer, pl_module)


class FewShotEvaluation(L.Callback):
    """After testing: ``strategy.eval_episodes`` few-shot episodes on the target's test split (summary.json's
    ``fewshot``)."""

    def __init__(self, strategy: ProtoNet):
        self.strategy = strategy
        self.result: Optional[Dict[str, Any]] = None

    def on_test_end(self, trainer, pl_module) -> None:
        self.result = self.strategy.fewshot_evaluation(pl_module, trainer.datamodule.unwrapped)

    def summary_sections(self) -> Dict[str, Any]:
        return {"fewshot": self.result} if self.result else {}
