"""Average the weights of several checkpoints of one model (a "model soup") into one file.

    python -m tools.average_weights run8/best.pkl run9/best.pkl --out checkpoints/upr-base.pkl
    python -m tools.average_weights a.pkl b.safetensors --weights 2 1 --out soup.safetensors

Useful for weights of one lineage (a run and a run continued from it): the checkpoint shipped before run 13 was
the mean of two such runs' best weights (README, The shipped checkpoint); tools.greedy_soup picks the members.
Inputs may be .pkl/.pth/.pt (read with weights_only=True; training checkpoints' "model" entry is used) or
.safetensors; the output format follows the suffix of --out and is written atomically.
"""
import argparse

from core.checkpoint import average_weights, save_weights
from core.cli import UsageError, check_weights_output, cli_main


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="two or more weight files of the same model")
    parser.add_argument("--weights", type=float, nargs="+", default=None,
                        help="one non-negative weight per checkpoint (default: equal), normalised to sum to 1")
    parser.add_argument("--out", required=True, help="output file (.pkl, .pth or .safetensors)")
    return parser


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if len(args.checkpoints) < 2:
        raise UsageError("give at least two checkpoints to average")
    check_weights_output(args.out)
    save_weights(average_weights(args.checkpoints, args.weights), args.out)
    print(f"wrote {args.out}: mean of {len(args.checkpoints)} checkpoints"
          + (f" with weights {args.weights}" if args.weights else ""))


if __name__ == "__main__":
    raise SystemExit(main())
