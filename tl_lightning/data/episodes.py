"""Episodes for few-shot training and evaluation: N ways, K support shots and Q queries per way.

``EpisodeSampler`` yields the indices of ``episodes`` episodes one after the other; a DataLoader with
``batch_size = N * (K + Q)`` turns each into one batch laid out as the N*K support samples (way by way) followed
by the N*Q queries (way by way). The ways are random classes, the samples random members of them, drawn from a
generator seeded by (seed, epoch, rank), so runs and resumes repeat their episodes and DDP ranks draw their own.
It is a ``DistributedSampler`` (its own rank and replicas), so Lightning leaves it in place under DDP.
"""

from typing import Iterator, List, Sequence

import numpy as np
from torch.utils.data import DataLoader, DistributedSampler

from tl_lightning.data.samplers import leave_stop_signals_to_main
from tl_lightning.data.wrapped import WrappedDataModule


class EpisodeSampler(DistributedSampler):
    def __init__(self, labels: Sequence[int], ways: int, shots: int, queries: int, episodes: int, seed: int,
                 num_replicas: int = 1, rank: int = 0):
        super().__init__(range(len(labels)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.labels = np.asarray(labels)
        self.by_class = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}
        self.classes = sorted(self.by_class)
        self.ways, self.shots, self.queries, self.episodes = ways, shots, queries, episodes

    @property
    def episode_size(self) -> int:
        return self.ways * (self.shots + self.queries)

    def __len__(self) -> int:
        return self.episodes * self.episode_size

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        for _ in range(self.episodes):
            yield from episode_indices(rng, self.by_class, self.classes, self.ways, self.shots, self.queries)


def episode_indices(rng, by_class, classes, ways: int, shots: int, queries: int) -> List[int]:
    chosen = rng.choice(classes, size=ways, replace=False)
    picks = [rng.choice(by_class[int(c)], size=shots + queries, replace=False) for c in chosen]
    return [int(i) for p in picks for i in p[:shots]] + [int(i) for p in picks for i in p[shots:]]


class EpisodicDataModule(WrappedDataModule):
    """Training batches are episodes of ``episode_data``; validation and testing are the target datamodule's."""

    def __init__(self, target, episode_data, shape, episodes: int):
        super().__init__(target)
        self.episode_data, self.shape, self.episodes = episode_data, shape, episodes

    def train_dataloader(self) -> DataLoader:
        target = self.unwrapped
        cfg, trainer = target.cfg, getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpisodeSampler(self.episode_data.targets, *self.shape, self.episodes, cfg.seed, world, rank)
        return DataLoader(self.episode_data, batch_size=sampler.episode_size, sampler=sampler, num_workers=cfg.num_workers,
                          pin_memory=cfg.pin_memory, persistent_workers=cfg.num_workers > 0,
                          collate_fn=target.preprocessing.collate, worker_init_fn=leave_stop_signals_to_main)
