"""Episodes for few-shot training and evaluation: N ways, K support shots and Q queries per way.

``EpisodeSampler`` is a batch sampler: each batch is one episode laid out as the N*K support samples (way by
way) followed by the N*Q queries (way by way); the ways are random classes, the samples random members of
them, both drawn from a generator seeded by (seed, epoch, rank), so runs and resumes repeat their episodes.
"""

from typing import Iterator, List, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from tl_lightning.data.base import leave_stop_signals_to_main


class EpisodeSampler(Sampler):
    def __init__(self, labels: Sequence[int], ways: int, shots: int, queries: int, episodes: int, seed: int):
        self.labels = np.asarray(labels)
        self.by_class = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}
        self.classes = sorted(self.by_class)
        self.ways, self.shots, self.queries, self.episodes = ways, shots, queries, episodes
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.episodes

    def __iter__(self) -> Iterator[List[int]]:
        rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
        rng = np.random.default_rng([self.seed, self.epoch, rank])
        for _ in range(self.episodes):
            yield episode_indices(rng, self.by_class, self.classes, self.ways, self.shots, self.queries)


def episode_indices(rng, by_class, classes, ways: int, shots: int, queries: int) -> List[int]:
    chosen = rng.choice(classes, size=ways, replace=False)
    picks = [rng.choice(by_class[int(c)], size=shots + queries, replace=False) for c in chosen]
    return [int(i) for p in picks for i in p[:shots]] + [int(i) for p in picks for i in p[shots:]]


class EpisodicDataModule(L.LightningDataModule):
    """Training batches are episodes of ``episode_data``; validation and testing are the target datamodule's."""

    def __init__(self, target, episode_data, sampler: EpisodeSampler):
        super().__init__()
        self.target, self.episode_data, self.sampler = target, episode_data, sampler
        self.class_names, self.num_classes, self.split_info = target.class_names, target.num_classes, target.split_info

    def train_dataloader(self) -> DataLoader:
        cfg = self.target.cfg
        return DataLoader(self.episode_data, batch_sampler=self.sampler, num_workers=cfg.num_workers,
                          pin_memory=cfg.pin_memory, persistent_workers=cfg.num_workers > 0,
                          collate_fn=self.target.preprocessing.collate, worker_init_fn=leave_stop_signals_to_main)

    def val_dataloader(self) -> DataLoader:
        return self.target.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self.target.test_dataloader()
