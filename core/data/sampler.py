"""A DistributedSampler that yields ``(epoch, index)`` keys and can resume mid-epoch.

Datasets seed each sample's randomness from its key, so a run's data depend only on (seed, epoch, index):
the same with any number of workers, and identical after ``--resume``.
"""
from torch.utils.data import DistributedSampler


class EpochIndexSampler(DistributedSampler):
    def __init__(self, dataset, num_replicas=1, rank=0, shuffle=True, seed=0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.skip = 0

    def set_position(self, epoch, skip=0):
        """Start epoch ``epoch`` after its first ``skip`` samples (of this rank)."""
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        for position, index in enumerate(super().__iter__()):
            if position >= self.skip:
                yield (self.epoch, index)

    def __len__(self):
        return super().__len__() - self.skip


class KeyedConcat:
    """Concatenation of datasets indexed by ``(epoch, index)`` keys (torch's ConcatDataset takes ints)."""

    def __init__(self, datasets):
        self.datasets = [d for d in datasets if len(d) > 0]
        self.offsets = []
        total = 0
        for dataset in self.datasets:
            self.offsets.append(total)
            total += len(dataset)
        self.length = total

    def __len__(self):
        return self.length

    def __getitem__(self, key):
        epoch, index = key
        for dataset, offset in zip(reversed(self.datasets), reversed(self.offsets)):
            if index >= offset:
                return dataset[(epoch, index - offset)]
        raise IndexError(index)
