"""Processes: ranks from the launcher, the process group, seeding, and stopping all ranks at the same step."""
import os
import random
import signal

import numpy as np
import torch
import torch.distributed as dist


def process_ranks(args, environ=None):
    """(rank, world_size, local_rank) of this process from the launcher's environment (torchrun and
    torch.distributed.launch set RANK, WORLD_SIZE and LOCAL_RANK; the latter also passes --local-rank, used when
    LOCAL_RANK is not set). A --world_size that differs from WORLD_SIZE is a one-line error."""
    environ = os.environ if environ is None else environ
    world_size = int(environ.get("WORLD_SIZE", 1))
    rank = int(environ.get("RANK", 0))
    local_rank = int(environ["LOCAL_RANK"]) if "LOCAL_RANK" in environ else (args.local_rank or 0)
    if args.world_size is not None and args.world_size != world_size:
        launched = (f"the launcher started {world_size} (WORLD_SIZE)" if "WORLD_SIZE" in environ else
                    "1 process was started (WORLD_SIZE is not set)")
        raise SystemExit(f"error: --world_size {args.world_size} but {launched}: launch {args.world_size} in all, "
                         f"e.g. torchrun --nproc_per_node={args.world_size} -m tools.train ... (over several "
                         f"machines: --nnodes x --nproc_per_node = {args.world_size})")
    if not 0 <= rank < world_size:
        raise SystemExit(f"error: RANK {rank} is outside [0, WORLD_SIZE {world_size})")
    return rank, world_size, local_rank


def setup_distributed(args):
    """Returns (rank, world_size, local_rank, device); joins the process group (NCCL on CUDA, else Gloo) when
    more than one process was launched. The rendezvous (MASTER_ADDR / MASTER_PORT) comes from the launcher."""
    rank, world_size, local_rank = process_ranks(args)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    return rank, world_size, local_rank, device


def distribute(model, world_size, device, local_rank):
    """``model`` wrapped in DistributedDataParallel when there are several processes (which broadcasts rank 0's
    weights to all), else ``model``."""
    if world_size == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)


def link_train_log(train_log_root):
    """Rank 0: make ./train-log point at ``train_log_root`` unless ./train-log exists, so that
    ``tensorboard --logdir=./train-log/<exp_name>/tensorboard`` (the original README's command) finds the run.
    Returns the TensorBoard folder prefix to show: ./train-log when it leads to the root, else the root."""
    link = "train-log"
    if not os.path.lexists(link):
        os.symlink(train_log_root, link)
    if os.path.realpath(link) == os.path.realpath(train_log_root):
        return "./" + link
    return train_log_root


def seed_everything(seed, rank):
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)


class StopSignals:
    """Records the first SIGINT / SIGTERM (``.signal``) instead of stopping, so the run saves and stops at a step.

    The handler only records: printing there could re-enter a print the main thread is in the middle of
    ("reentrant call" RuntimeError), and forked data workers inherit it. The record is never cleared, so a signal
    arriving during a step's stop vote is acted on at the next step, not lost."""

    def __init__(self):
        self.signal = None
        signal.signal(signal.SIGINT, self._record)
        signal.signal(signal.SIGTERM, self._record)

    def _record(self, signum, _frame):
        if self.signal is None:
            self.signal = signum


def stop_vote(code, device, world_size):
    """The largest of every process's ``code`` (0: go on), so that all processes stop at the same step."""
    vote = torch.tensor(code, device=device)        # NCCL reduces device tensors only
    if world_size > 1:
        dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return int(vote.item())
