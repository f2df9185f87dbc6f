"""Test a checkpoint on any datamodule: the same metrics, per-class accuracy, confusion picture and loggers as a
training run's test stage, and ``summary_eval.json``.

The checkpoint's classes are matched by name: the data may hold all of them or a subset (in any order), and a
class the checkpoint does not know is an error listing the difference.
"""

import logging
import os
import time
from typing import Any, Dict, List, Optional

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from tl_lightning.batch import in_memory_format
from tl_lightning.callbacks.confusion_matrix import ConfusionMatrixPlot
from tl_lightning.callbacks.progress import terminal_progress_bar
from tl_lightning.config.validate import validate_data, validate_recorded_data
from tl_lightning.context import DataPaths
from tl_lightning.data import build_datamodule
from tl_lightning.data.all_samples import all_samples, all_samples_task
from tl_lightning.data.base import batch_size_for
from tl_lightning.deploy.tta import with_tta
from tl_lightning.errors import ConfigError, DataError
from tl_lightning.inference import InferenceModel, load
from tl_lightning.loggers import build_loggers, finish_wandb, log_lines_once
from tl_lightning.metrics import StageMetrics, log_stage_end
from tl_lightning.summary import scalar_metrics, test_sections, write_json
from tl_lightning.task import TaskDescription
from tl_lightning.trainer import trainer_kwargs

log = logging.getLogger(__name__)


class EvalModule(L.LightningModule):
    """The inference model in a test loop; data labels are mapped onto the model's classes (``target_map``)."""

    def __init__(self, model: InferenceModel, target_map: List[int], task: TaskDescription, tta: str = "none"):
        """``task``: the data's task description (its groups and attribute: what the fairness gaps compare; its
        class masks: a multi-source run's own data is scored over each sample's source's classes). ``tta``: the
        model scores averaged views of each image (tl_lightning/deploy/tta.py)."""
        super().__init__()
        self.model = with_tta(model, tta, model.preprocessing.modality)
        self.class_names = model.class_names
        self.register_buffer("target_map", torch.tensor(target_map, dtype=torch.long), persistent=False)
        self.task = task
        self.present = set(target_map)
        self.test_metrics = StageMetrics("test", len(model.class_names), task.group_names, task.group_attribute)
        self.channels_last = False

    def forward(self, inputs) -> torch.Tensor:
        return self.model(in_memory_format(inputs, self.channels_last))

    def test_step(self, batch, batch_idx):
        logits = self.task.restrict(self(batch["inputs"]), batch["group"])
        target = self.target_map[batch["target"]]
        self.log("test/loss", F.cross_entropy(logits, target), on_epoch=True, sync_dist=True, prog_bar=True)
        self.test_metrics.update(logits, target, batch.get("group"))

    def on_test_epoch_end(self) -> None:
        log_stage_end(self, self.test_metrics, self.class_names, self.present)


def folder_safe(name: str) -> str:
    """A class name as a folder can hold it ("T-shirt/top" -> "T-shirt-top")."""
    return name.replace("/", "-").replace("\\", "-")


def class_mapping(data_names: List[str], model_names: List[str], data_name: str) -> List[int]:
    """For each class of the data, its index among the model's classes: by name, or by the folder-safe form of
    the model's class name (a class folder cannot be called "T-shirt/top")."""
    safe = {folder_safe(n): n for n in model_names}
    data_names = [n if n in model_names else safe.get(n, n) for n in data_names]
    unknown = [n for n in data_names if n not in model_names]
    if unknown:
        shown = ", ".join(unknown[:8]) + (f" (+{len(unknown) - 8} more)" if len(unknown) > 8 else "")
        raise DataError(f"data={data_name} has classes the checkpoint does not know: {shown}; the checkpoint's "
                        f"classes: {', '.join(model_names)}")
    return [model_names.index(n) for n in data_names]


def eval_data_config(cfg: DictConfig, model: InferenceModel, data_choice: Optional[str]) -> DictConfig:
    """The data to test on: the chosen option, or the checkpoint's recorded data with ``data.*`` overrides."""
    recorded = model.config.get("data")
    if data_choice:
        node = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=False))
        seed = cfg.seed if cfg.seed is not None else model.config.get("seed", 0)
        node.seed = seed
    else:
        if not recorded:
            raise ConfigError(f"ckpt_path: {model.path} records no data config; choose the data with data=<option>")
        try:
            return validate_data(OmegaConf.merge(OmegaConf.create(recorded), cfg.data or {}))
        except ConfigError:
            validate_recorded_data(recorded, model.path)  # the checkpoint's own config at fault: say so
            raise
    return validate_data(node)


def evaluate(cfg: DictConfig, output_dir: str, data_choice: Optional[str] = None) -> Dict[str, Any]:
    """Test ``cfg.ckpt_path``; returns the summary written to ``<output_dir>/summary_eval.json``."""

    start = time.time()
    log_lines_once()
    model = load(cfg.ckpt_path)
    split = cfg.split if cfg.split != "auto" else ("all" if data_choice else "test")
    data_cfg = eval_data_config(cfg, model, data_choice)
    if split == "all":
        data_cfg.samples_per_class, data_cfg.eval_per_class = None, None
    datamodule = build_datamodule(data_cfg, model.preprocessing, DataPaths.of(cfg.paths))
    if split == "all":
        dataset = all_samples(datamodule)
    else:
        datamodule.setup("fit")
        dataset = datamodule.datasets[split].with_transform(model.preprocessing.transform(train=False))
    loader = DataLoader(dataset, batch_size=batch_size_for(data_cfg, "test"), shuffle=False,
                        num_workers=data_cfg.num_workers, collate_fn=model.preprocessing.collate)
    target_map = class_mapping(datamodule.class_names, model.class_names, data_cfg.name)
    task = all_samples_task(datamodule) if split == "all" else datamodule.task
    if target_map != list(range(len(model.class_names))):  # class masks index the run's own label space only
        task = task.without_masks()
    module = EvalModule(model, target_map, task, cfg.get("tta", "none"))
    if cfg.trainer.channels_last and datamodule.modality == "image":
        module.channels_last = True
        module.to(memory_format=torch.channels_last)
    trained = model.config
    run_name = f"eval-{trained.get('strategy', {}).get('name', 'run')}-{data_cfg.name}"
    logger_cfg = OmegaConf.to_container(cfg.logger)
    if logger_cfg.get("wandb") and logger_cfg["wandb"].get("job_type") == "train":
        logger_cfg["wandb"]["job_type"] = "eval"
    run_config = {"ckpt_path": cfg.ckpt_path, "split": split, "data": OmegaConf.to_container(data_cfg),
                  "trained_with": trained}
    loggers = build_loggers(OmegaConf.create(logger_cfg), output_dir, run_config, None, run_name)
    try:
        callbacks = [ConfusionMatrixPlot(output_dir)] if cfg.confusion_matrix else []
        if cfg.progress_bar:
            callbacks.append(terminal_progress_bar())
        kwargs = {k: v for k, v in trainer_kwargs(cfg).items() if not k.startswith(("max_", "min_"))}
        trainer = L.Trainer(**kwargs, callbacks=callbacks, logger=loggers or False, default_root_dir=output_dir,
                            enable_progress_bar=cfg.progress_bar, enable_checkpointing=False)
        trainer.test(module, dataloaders=loader, verbose=False)
        metrics = scalar_metrics(trainer.callback_metrics)
    finally:
        finish_wandb()
    summary = {
        "ckpt_path": os.path.abspath(cfg.ckpt_path),
        "trained": {"strategy": trained.get("strategy", {}).get("name"), "backbone": model.backbone.name,
                    "dataset": (trained.get("data") or {}).get("name"), "seed": trained.get("seed")},
        "dataset": data_cfg.name,
        "split": split,
        "class_names": model.class_names,
        "classes_in_data": datamodule.class_names,
        "split_info": datamodule.split_info,
        **test_sections(metrics),
        "samples": len(dataset),
        "tta": cfg.get("tta", "none"),
        "wall_time_s": round(time.time() - start, 2),
    }
    if trainer.is_global_zero:
        write_json(os.path.join(output_dir, "summary_eval.json"), summary)
    return summary
