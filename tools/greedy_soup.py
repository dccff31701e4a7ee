"""Greedy model soup: average checkpoints one at a time, keeping each one that raises the validation PSNR.

    python -m tools.greedy_soup checkpoints/upr-base.pkl run/checkpoints/step_*.pkl --sort \
        --out soup.pkl -- --config configs/shared_clips_cpu.py

The first checkpoint tried starts the soup; each next one is kept if the equal-weight mean of the kept checkpoints
and it validates higher than the soup so far. Trial order: as given, or with ``--sort`` by each checkpoint's own
validation score, best first, as Wortsman et al. ("Model soups", ICML 2022) do (one more validation per
checkpoint). Meant for weights of one lineage: a run's ``step_<step>.pkl`` files (``tools.train
--keep_validated_weights``) and the weights it started from. Everything after ``--`` is ``tools.train``'s options:
they set the validation set, pyramid level, device and threads exactly as during training, so each score is the one
``tools.train --validate_only`` prints for that mean. The soup is written atomically to --out (.pkl, .pth, .pt
or .safetensors).
"""
import argparse
import sys

import torch

from core import build_model, load_weights, save_weights
from core.checkpoint import average_weights, read_state_dict
from core.cli import UsageError, check_weights_output, cli_main
from core.training import build_datasets, seed_everything, setup_distributed, validate
from tools.train import parse_args as parse_train_args


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     usage="%(prog)s CHECKPOINT CHECKPOINT [...] --out OUT -- [tools.train options]")
    parser.add_argument("checkpoints", nargs="+",
                        help="two or more weight files of one model (trial order unless --sort)")
    parser.add_argument("--out", required=True, help="output file (.pkl, .pth, .pt or .safetensors)")
    parser.add_argument("--sort", action="store_true",
                        help="validate each checkpoint alone first and try them best first (ties: given order)")
    return parser


def greedy_soup(candidates, score, sort=False):
    """Indices of the kept candidates (in trial order) and the soup's score. ``candidates`` are state dicts;
    ``score(state)`` returns the validation PSNR of a state dict. The first candidate tried is always kept; each
    next one is kept when the mean of the kept ones and it scores strictly higher than the kept ones' mean.
    Trial order: as given, or with ``sort`` by each candidate's own score, best first (stable)."""
    order = list(range(len(candidates)))
    if sort:
        alone = [score(state) for state in candidates]
        for i, psnr in enumerate(alone):
            print(f"{i} alone: {psnr:.3f} dB", flush=True)
        order.sort(key=lambda i: -alone[i])
        best = alone[order[0]]
    else:
        best = score(candidates[0])
    kept = order[:1]
    print(f"start with {kept[0]}: {best:.3f} dB", flush=True)
    for i in order[1:]:
        trial = score(average_weights([candidates[k] for k in kept + [i]]))
        if trial > best:
            kept, best = kept + [i], trial
        print(f"+ {i}: {trial:.3f} dB, {'kept' if kept[-1] == i else 'dropped'} (soup of {len(kept)}: {best:.3f})",
              flush=True)
    return kept, best


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:split])
    if len(args.checkpoints) < 2:
        raise UsageError("give at least two checkpoints")
    check_weights_output(args.out)
    train_args = parse_train_args(argv[split + 1:])
    if train_args.threads:
        torch.set_num_threads(train_args.threads)
    seed_everything(train_args.seed, 0)
    device = setup_distributed(train_args)[3]
    states = [read_state_dict(path) for path in args.checkpoints]
    model = build_model(train_args.model_size, pyr_level=train_args.pyr_level).to(device)
    _, val_set = build_datasets(train_args)
    for i, path in enumerate(args.checkpoints):
        print(f"{i}: {path}")

    def score(state):
        load_weights(model, state)
        return validate(model, val_set, train_args, device)[0]

    kept, best = greedy_soup(states, score, sort=args.sort)
    save_weights(average_weights([states[k] for k in kept]), args.out)
    print(f"wrote {args.out}: mean of {len(kept)} checkpoint(s) ({', '.join(args.checkpoints[k] for k in kept)}); "
          f"validation PSNR {best:.3f} dB ({len(val_set)} samples)")


if __name__ == "__main__":
    raise SystemExit(main())
