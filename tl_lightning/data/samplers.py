"""``data.sampler=balanced``: every class drawn equally often, with replacement (as
``torch.utils.data.WeightedRandomSampler`` draws, with weights 1 / class count), deterministic per (seed, epoch)
and correct under DDP.

The sampler is a ``DistributedSampler`` so Lightning does not wrap it: every rank draws the same stream of
``ceil(n / world) * world`` indices from a generator seeded by (seed, epoch) and takes its own disjoint share
(positions rank, rank + world, ...). An epoch has as many steps as a plain shuffled one. Like
``EpochShuffleSampler``, it reseeds the epoch's random stream (augmentation, dropout) when iteration starts, so a
run resumed at an epoch boundary continues exactly.

Also what every loader's workers run first (``leave_stop_signals_to_main``).
"""

import math
import signal
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler


def class_balanced_weights(labels: Sequence[int]) -> torch.Tensor:
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels)
    return torch.as_tensor(1.0 / counts[labels], dtype=torch.double)


class BalancedSampler(DistributedSampler):
    def __init__(self, labels: Sequence[int], seed: int, num_replicas: int = 1, rank: int = 0):
        super().__init__(range(len(labels)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.weights = class_balanced_weights(labels)
        self.per_rank = math.ceil(len(labels) / num_replicas)

    def stream(self) -> torch.Tensor:
        """The epoch's draws, the same on every rank."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.multinomial(self.weights, self.per_rank * self.num_replicas, replacement=True, generator=generator)

    def __iter__(self) -> Iterator[int]:
        mine = self.stream()[self.rank::self.num_replicas].tolist()
        torch.manual_seed(self.seed * 100_003 + self.epoch + 1)
        return iter(mine)

    def __len__(self) -> int:
        return self.per_rank


def leave_stop_signals_to_main(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM and SIGINT. A signal sent to the whole process group (Ctrl-C in a
    terminal, `timeout`, Slurm's time limit or preemption) would otherwise kill them mid-epoch, and the main
    process, instead of stopping after the batch and saving last.ckpt, would fail with 'DataLoader worker is
    killed by signal'. The main process shuts them down as usual; they also exit when it dies."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
