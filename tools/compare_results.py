"""Compare two benchmark results (``--out_json`` files of the same frames) frame by frame.

    python -m tools.compare_results upr.json dis.json                  # per subset
    python -m tools.compare_results upr.json dis.json --by folder      # per clip / scene folder

Prints, per group, the number of frames, each result's mean score, the mean of the per-frame differences
(A - B) with their range, and on how many frames A scores higher: where a subset's gap comes from.
"""
import argparse

from core.cli import UsageError, cli_main
from core.evaluation import SCORE_KEYS, paired_differences, read_result


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result_a", help="--out_json of a benchmark script (A)")
    parser.add_argument("result_b", help="--out_json of the same benchmark on the same frames (B)")
    parser.add_argument("--by", choices=("subset", "folder"), default="subset",
                        help="group frames by subset (default) or by the folder of their save name")
    parser.add_argument("--score", choices=SCORE_KEYS, default="psnr", help="score to compare (default: psnr)")
    return parser


def read_frames(path):
    result = read_result(path)
    if "frames" not in result:
        raise UsageError(f"{path} has no per-frame scores ('frames'); rerun the benchmark with this version")
    return result["frames"]


@cli_main(extra_errors=(ValueError,))   # read_result and paired_differences report bad input as ValueError
def main(argv=None):
    args = build_parser().parse_args(argv)
    frames_a, frames_b = read_frames(args.result_a), read_frames(args.result_b)
    table = paired_differences(frames_a, frames_b, args.score, args.by)
    print(f"A: {args.result_a}\nB: {args.result_b}\n{args.score}, A - B per frame")
    print(f"{'group':<32} {'frames':>6} {'A':>9} {'B':>9} {'A - B':>8} {'min':>8} {'max':>8} {'A better':>9}")
    for group, row in table.items():
        print(f"{group:<32} {row['count']:>6} {row['a']:>9.3f} {row['b']:>9.3f} {row['difference']:>+8.3f} "
              f"{row['min']:>+8.2f} {row['max']:>+8.2f} {row['a_better']:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
