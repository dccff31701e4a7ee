"""Regenerate the demo frame triplets in demo/images/ from the project's source clips (deterministic).

    python -m demo.make_demo_images [--videos ../shared/videos] [--output_dir demo/images]

Each triplet is (frame0, the true middle frame, frame1) of a real clip, decoded with PyAV and converted to
RGB with OpenCV's BT.601 conversion (core.video), so the PNGs are identical on every machine.
"""
import argparse
import os

import cv2
import numpy as np

from core.cli import UsageError, cli_main
from core.video import open_reader

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_VIDEOS = os.path.join(os.path.dirname(REPO_ROOT), "shared", "videos")

TRIPLETS = [
    # name, clip, (frame0, middle, frame1) indices among the decoded frames (0-based)
    ("bikes", "bikes.mp4", (201, 202, 203)),               # walking legs, fast motion; shot 187-241
    ("carphone", "carphone_pristine.mp4", (80, 82, 84)),   # head turning; a 2-frame gap each side
    ("tree", "tree.avi", (56, 57, 58)),                    # a hand sweeping in front of a tree
]


def extract(video, indices):
    wanted, frames = set(indices), {}
    with open_reader(video) as reader:
        for index, frame in enumerate(reader):
            if index in wanted:
                frames[index] = frame
            if len(frames) == len(wanted):
                break
    missing = sorted(wanted - set(frames))
    if missing:
        raise UsageError(f"{video} has no frame(s) {missing}")
    return [frames[i] for i in indices]


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default=DEFAULT_VIDEOS, help="folder with the source clips")
    parser.add_argument("--output_dir", default=os.path.join(REPO_ROOT, "demo", "images"))
    args = parser.parse_args(argv)
    for name, clip, indices in TRIPLETS:
        frames = extract(os.path.join(args.videos, clip), indices)
        for k, frame in enumerate(frames):
            path = os.path.join(args.output_dir, f"{name}_{k}.png")
            os.makedirs(args.output_dir, exist_ok=True)
            cv2.imwrite(path, np.ascontiguousarray(frame[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
            print(f"{path}: {clip} frame {indices[k]} ({frame.shape[1]}x{frame.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
