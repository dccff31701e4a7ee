"""Training data-loader throughput: samples/s of the training set that ``tools.train`` would build.

    python -m tools.data_speed --workers 1 2 --batches 20 -- --config configs/heldout_clips_cpu.py

Everything after ``--`` is given to ``tools.train``'s parser (dataset, crops, flow teacher, synthetic ratio,
``--video_cache``, ...). For each worker count the loader runs ``--batches`` batches after one warm-up batch
(which also starts the workers) and reports samples/s in all and per worker. Data preparation (the frame cache)
is done once before timing.
"""
import argparse
import time

import cv2
import torch

from core.data import EpochIndexSampler
from core.training import build_datasets
from tools.train import parse_args


def loader_speed(dataset, batch_size, workers, batches, seed=0, pin_memory=False):
    """Samples per second that a DataLoader with ``workers`` processes (sampled as tools.train samples) delivers
    from ``dataset``, over ``batches`` batches after a warm-up batch (which also starts the workers)."""
    sampler = EpochIndexSampler(dataset, shuffle=True, seed=seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                         drop_last=True, pin_memory=pin_memory)
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.data_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="data worker counts to time")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per worker count")
    parser.add_argument("train_options", nargs=argparse.REMAINDER, help="-- then tools.train options")
    args = parser.parse_args(argv)
    options = args.train_options[1:] if args.train_options[:1] == ["--"] else args.train_options
    train_args = parse_args(options)
    cv2.setNumThreads(1)          # as tools.train: OpenCV's pool does not survive fork()
    torch.set_num_threads(1)
    train_set, _ = build_datasets(train_args)
    print(f"{len(train_set)} training samples, batch {train_args.batch_size}, crop {train_args.crop_h}x"
          f"{train_args.crop_w}, flow teacher {train_args.flow_teacher}, synthetic ratio {train_args.synthetic_ratio}")
    for workers in args.workers:
        rate = loader_speed(train_set, train_args.batch_size, workers, args.batches, train_args.seed)
        print(f"{workers} worker(s): {rate:.1f} samples/s ({rate / max(workers, 1):.1f} per worker)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
