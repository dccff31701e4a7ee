"""Re-encode the training clips into a compact pack that travels to the lent GPU machine (no PyAV there).

    python -m tools.make_train_pack                                  # ../shared/videos -> train_pack/
    python -m tools.make_train_pack --videos ../shared/videos --out train_pack --crf 24 --max_mb 26

Every clip becomes <out>/<name>.mp4 (H.264, read there through OpenCV), with <out>/pack.json; clips already
packed from unchanged sources are skipped. The pack is re-created by this command, never committed
(train_pack/ is ignored); tools/gpu_train.sh carries it. Details: docs/gpu_training.md.
"""
import argparse
import os
from fractions import Fraction

from core.cli import UsageError, cli_main
from core.data.train_pack import DEFAULT_CRF, make_pack
from core.data.video_frames import list_video_sources


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.make_train_pack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", nargs="+", default=["../shared/videos"],
                        help="video files, frame folders, or folders of them (default: ../shared/videos)")
    parser.add_argument("--out", default="train_pack", help="pack folder (default: train_pack)")
    parser.add_argument("--crf", type=int, default=DEFAULT_CRF, help=f"H.264 quality (default {DEFAULT_CRF})")
    parser.add_argument("--max_mb", type=float, default=0,
                        help="fail if the pack is larger than this many MB (0: no limit)")
    args = parser.parse_args(argv)
    if not 0 <= args.crf <= 51:
        raise UsageError(f"--crf must lie in [0, 51], got {args.crf}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out} exists and is not a folder")
    sources = list_video_sources(args.videos)
    if not sources:
        raise UsageError(f"no videos or frame folders in {' '.join(args.videos)}")
    entries = make_pack(sources, args.out, args.crf)
    total = sum(entry["bytes"] for entry in entries)
    for entry in entries:
        print(f"{os.path.basename(entry['source'])}: {entry['frames']} frames {entry['width']}x{entry['height']} "
              f"at {float(Fraction(entry['fps'])):.3f} fps, {entry['bytes'] / 1e6:.2f} MB")
    print(f"{len(entries)} clips, {sum(e['frames'] for e in entries)} frames, {total / 1e6:.1f} MB in "
          f"{os.path.abspath(args.out)}")
    if args.max_mb and total > args.max_mb * 1e6:
        raise UsageError(f"the pack is {total / 1e6:.1f} MB, over --max_mb {args.max_mb}: raise --crf")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
