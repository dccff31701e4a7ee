"""Ranks for jobs spread over several processes, GPUs and machines (torchrun), and one process without it.

A :class:`Shard` says which part of a list of work items this process does: rank r of world size w owns the
items whose index i satisfies i % w == r. :meth:`Shard.from_environment` reads torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and joins one process group: NCCL when the
device is CUDA (this process then uses ``cuda:LOCAL_RANK``), Gloo otherwise. Without that environment (or with
``WORLD_SIZE=1``) it is a one-process shard: rank 0 of 1, :meth:`barrier` does nothing and :meth:`all_gather`
returns ``[obj]``, so callers need no special case.

Only small Python objects travel between ranks (results, lists of file names, error messages); frames and
videos go through the file system, which every rank must see at the same paths.
"""
import atexit
import datetime
import os

import torch

DEFAULT_TIMEOUT = datetime.timedelta(days=7)
"""How long a collective (barrier, gather) waits for the slowest rank: one rank may still be converting a long
video while the others wait to join. torchrun stops every rank when one fails, so a long wait cannot hang."""


class ShardError(OSError):
    """The launcher's environment is unusable (a rank outside the world, no rendezvous address, ...). An OSError,
    so every tool reports it as one ``error: ...`` line."""


def _environment_ranks(environ):
    """(rank, world_size, local_rank) from ``environ``; (0, 1, 0) when WORLD_SIZE is not set."""
    try:
        world_size = int(environ.get("WORLD_SIZE", 1))
        rank = int(environ.get("RANK", 0))
        local_rank = int(environ.get("LOCAL_RANK", 0))
    except ValueError as error:
        raise ShardError(f"RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers: {error}") from None
    if world_size < 1:
        raise ShardError(f"WORLD_SIZE must be at least 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ShardError(f"RANK {rank} is outside [0, WORLD_SIZE {world_size})")
    if local_rank < 0:
        raise ShardError(f"LOCAL_RANK must not be negative, got {local_rank}")
    return rank, world_size, local_rank


class Shard:
    """This process's place among the processes of one job.

    rank: global rank in [0, world_size); local_rank: rank on this machine (the GPU index); device: the
    torch.device this rank computes on; is_main: rank 0, the one that joins results and writes summaries.
    Build it with :meth:`from_environment` (or ``Shard()`` for one process); :meth:`close` leaves the process
    group (also done at exit).
    """

    def __init__(self, rank=0, world_size=1, local_rank=0, device=None, group=False, owned=True):
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._group = group
        self._owned = owned

    def __repr__(self):
        return f"Shard(rank={self.rank}, world_size={self.world_size}, device={self.device})"

    @classmethod
    def from_environment(cls, device="auto", environ=None, timeout=DEFAULT_TIMEOUT):
        """The shard described by torchrun's environment variables (``environ``, default ``os.environ``).

        device: "auto" (CUDA when available, else the CPU), "cpu", "cuda" or a torch.device; with several ranks
        on CUDA each rank takes ``cuda:LOCAL_RANK`` and the process group uses NCCL, else Gloo. With one rank
        the device is returned as given ("auto" resolved) and no process group is made. A process that has joined
        the group already (an earlier job in it) reuses that group, and :meth:`close` leaves it alone. Raises
        :class:`ShardError` for an inconsistent environment or a CUDA rank without its GPU.
        """
        environ = os.environ if environ is None else environ
        rank, world_size, local_rank = _environment_ranks(environ)
        device = torch.device("cuda" if device in (None, "auto") and torch.cuda.is_available() else
                              "cpu" if device in (None, "auto") else device)
        if world_size == 1:
            return cls(device=device)
        if torch.distributed.is_initialized():              # joined before (another job of this process)
            if (torch.distributed.get_rank(), torch.distributed.get_world_size()) != (rank, world_size):
                raise ShardError(f"this process already belongs to a group as rank "
                                 f"{torch.distributed.get_rank()} of {torch.distributed.get_world_size()}, "
                                 f"not {rank} of {world_size}")
            if device.type == "cuda":
                device = torch.device("cuda", local_rank)
                torch.cuda.set_device(device)
            return cls(rank, world_size, local_rank, device, group=True, owned=False)
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in environ]
        if missing:
            raise ShardError(f"WORLD_SIZE is {world_size} but {' and '.join(missing)} "
                             f"{'is' if len(missing) == 1 else 'are'} not set: start the processes with torchrun")
        if device.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise ShardError(f"LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} "
                                 f"CUDA device(s): --nproc_per_node must not exceed the GPUs per machine")
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
            backend = "nccl"
        else:
            backend = "gloo"
        torch.distributed.init_process_group(backend, rank=rank, world_size=world_size, timeout=timeout,
                                             init_method="env://")
        shard = cls(rank, world_size, local_rank, device, group=True)
        atexit.register(shard.close)
        return shard

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        """True when this shard belongs to a process group of several ranks."""
        return self._group and torch.distributed.is_initialized()

    def owns(self, index):
        """Whether work item ``index`` (0-based) is this rank's: index % world_size == rank."""
        return index % self.world_size == self.rank

    def indices(self, count):
        """The indices in range(count) that this rank owns, in increasing order."""
        return list(range(self.rank, count, self.world_size))

    def barrier(self):
        """Wait until every rank has reached this call (nothing to wait for with one process)."""
        if not self.distributed:
            return
        if self.device.type == "cuda":
            torch.distributed.barrier(device_ids=[self.device.index])
        else:
            torch.distributed.barrier()

    def all_gather(self, obj):
        """Every rank's ``obj`` (any picklable Python object), as a list indexed by rank, on every rank."""
        if not self.distributed:
            return [obj]
        gathered = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, obj)
        return gathered

    def close(self):
        """Leave the process group if this shard made it (idempotent); the shard then acts as one process."""
        if self.distributed and self._owned:
            torch.distributed.destroy_process_group()
        self._group = False


def merge_by_index(parts, count):
    """Rebuild the list of ``count`` per-item results from ranks' parts (``parts[r]``: the results of items r,
    r + w, r + 2w, ... in that order, w = len(parts)). Raises ValueError when the parts do not add up to
    ``count`` items."""
    world = len(parts)
    merged = [None] * count
    seen = 0
    for rank, part in enumerate(parts):
        expected = len(range(rank, count, world))
        if len(part) != expected:
            raise ValueError(f"rank {rank} returned {len(part)} results, expected {expected}")
        for k, value in enumerate(part):
            merged[rank + k * world] = value
        seen += len(part)
    if seen != count:
        raise ValueError(f"the ranks returned {seen} results, expected {count}")
    return merged
