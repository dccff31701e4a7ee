"""Lay out frames of your own clips as the four benchmark datasets, to run the benchmark tools on them.

    python -m tools.make_benchmark_sets --videos ../shared/videos --out heldout --split val

``--split val`` uses only each clip's held-out tail (the frames the training tool's ``--val_fraction`` keeps out
of training, default the last 15%), ``all`` every frame. Triplets and windows never cross a scene cut.

    heldout/vimeo90k   tri_testlist.txt, sequences/<clip>/<start>/im1.png im2.png im3.png  (consecutive frames,
                       centre-cropped to at most 448x256)
    heldout/ucf101     <clip>_<start>/frame_00.png frame_01_gt.png frame_02.png  (centre crop to at most 256x256)
    heldout/snufilm    eval_modes/test-{easy,medium,hard,extreme}.txt and frames/<clip>/<index>.png: triplets
                       (i, i+g, i+2g) with g = 1, 2, 4, 8 frames (the doubling gaps of SNU-FILM), full frames
    heldout/xtest      <clip>/<start>/00000.png ... 00032.png: every window of 33 consecutive frames (step 33)
"""
import argparse
import os


from core.cli import UsageError, cli_main
from core.data.video_frames import list_video_sources, read_all_frames
from core.frames import write_image
from core.video import DEFAULT_SCENE_THRESHOLD, find_scene_cuts

SNU_GAPS = {"easy": 1, "medium": 2, "hard": 4, "extreme": 8}


def centre_crop(frame, height, width):
    h, w = frame.shape[:2]
    top, left = max(0, (h - height) // 2), max(0, (w - width) // 2)
    return frame[top:top + min(h, height), left:left + min(w, width)]


def shot_ranges(frames, first, threshold):
    """(start, end) of each shot restricted to frames first .. end of clip."""
    bounds = [0] + [c + 1 for c in find_scene_cuts(frames, threshold)] + [len(frames)]
    return [(max(a, first), b) for a, b in zip(bounds[:-1], bounds[1:]) if b - max(a, first) > 0]


def write_sets(clips, out, split, val_fraction, threshold, stride=None, xtest_stride=33):
    """clips: list of (name, frames). ``stride``: frames between the first frames of consecutive triplets
    (None: 2 for the Vimeo/UCF layouts, 1 for SNU-FILM, as in the defaults); ``xtest_stride``: frames between
    33-frame X-TEST windows (at least 33). Returns {dataset: number of samples written}."""
    xtest_stride = max(33, xtest_stride)
    counts = {"vimeo90k": 0, "ucf101": 0, "xtest": 0, **{f"snufilm-{m}": 0 for m in SNU_GAPS}}
    vimeo_list, snu_lists = [], {mode: [] for mode in SNU_GAPS}
    for name, frames in clips:
        first = int(round(len(frames) * (1 - val_fraction))) if split == "val" else 0
        written = set()
        for start, end in shot_ranges(frames, first, threshold):
            for i in range(start, end - 2, stride or 2):
                item = f"{name}/{i:05d}"
                for k in range(3):
                    write_image(os.path.join(out, "vimeo90k", "sequences", item, f"im{k + 1}.png"),
                                centre_crop(frames[i + k], 256, 448))
                    write_image(os.path.join(out, "ucf101", f"{name}_{i:05d}",
                                             ("frame_00.png", "frame_01_gt.png", "frame_02.png")[k]),
                                centre_crop(frames[i + k], 256, 256))
                vimeo_list.append(item)
                counts["vimeo90k"] += 1
                counts["ucf101"] += 1
            for mode, gap in SNU_GAPS.items():
                for i in range(start, end - 2 * gap, stride or 1):
                    paths = [f"frames/{name}/{i + k * gap:05d}.png" for k in range(3)]
                    for k, path in enumerate(paths):
                        if path not in written:
                            write_image(os.path.join(out, "snufilm", path), frames[i + k * gap])
                            written.add(path)
                    snu_lists[mode].append(" ".join(paths))
                    counts[f"snufilm-{mode}"] += 1
            for i in range(start, end - 32, xtest_stride):
                for k in range(33):
                    write_image(os.path.join(out, "xtest", name, f"{i:05d}", f"{k:05d}.png"), frames[i + k])
                counts["xtest"] += 1
    os.makedirs(os.path.join(out, "vimeo90k"), exist_ok=True)
    with open(os.path.join(out, "vimeo90k", "tri_testlist.txt"), "w") as f:
        f.writelines(line + "\n" for line in vimeo_list)
    os.makedirs(os.path.join(out, "snufilm", "eval_modes"), exist_ok=True)
    for mode, lines in snu_lists.items():
        with open(os.path.join(out, "snufilm", "eval_modes", f"test-{mode}.txt"), "w") as f:
            f.writelines(line + "\n" for line in lines)
    return counts


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.make_benchmark_sets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", nargs="+", required=True, help="video files, frame folders, or folders of them")
    parser.add_argument("--out", required=True, help="output folder (vimeo90k/, ucf101/, snufilm/, xtest/)")
    parser.add_argument("--split", default="val", choices=["val", "all"],
                        help="val: only each clip's held-out tail (default); all: every frame")
    parser.add_argument("--val_fraction", type=float, default=0.15, help="held-out tail (as in tools.train)")
    parser.add_argument("--scene_threshold", type=float, default=DEFAULT_SCENE_THRESHOLD)
    parser.add_argument("--stride", type=int, default=None,
                        help="frames between the first frames of consecutive triplets, every layout (default: 2 for "
                             "vimeo90k/ucf101, 1 for snufilm); larger values give smaller sets spread over whole clips")
    parser.add_argument("--xtest_stride", type=int, default=33,
                        help="frames between the starts of 33-frame X-TEST windows (at least 33)")
    args = parser.parse_args(argv)
    if args.stride is not None and args.stride < 1:
        raise UsageError(f"--stride must be at least 1, got {args.stride}")
    clips = [(os.path.splitext(os.path.basename(os.path.normpath(s)))[0], read_all_frames(s))
             for s in list_video_sources(args.videos)]
    counts = write_sets(clips, args.out, args.split, args.val_fraction, args.scene_threshold, args.stride,
                        args.xtest_stride)
    for name, frames in clips:
        first = int(round(len(frames) * (1 - args.val_fraction))) if args.split == "val" else 0
        print(f"{name}: {len(frames)} frames, using {first}..{len(frames) - 1}")
    print(", ".join(f"{k} {v}" for k, v in counts.items()) + f" -> {os.path.abspath(args.out)}")


if __name__ == "__main__":
    raise SystemExit(main())
