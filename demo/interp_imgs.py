"""Interpolate between two images with UPR-Net and show what the model did.

    python -m demo.interp_imgs --frame0 demo/images/bikes_0.png --frame1 demo/images/bikes_2.png \\
        --time_period 0.5 [--gt demo/images/bikes_1.png]

Output files, input formats, PSNR with --gt: docs/benchmarks.md (The demo).
"""
import math
import os

import cv2
import numpy as np

from core.cli import (UsageError, add_model_arguments, cli_main, interpolator_from_args, model_file_from_args,
                      tool_parser)
from core.flow_viz import flow_to_color
from core.frames import image_to_tensor, read_image, to_uint8, write_image
from core.metrics import psnr

TILE_MIN, TILE_MAX = 320, 640  # sheet tiles are scaled into this width range
LABEL_HEIGHT = 24


def parse_args(argv=None):
    parser = tool_parser("python -m demo.interp_imgs", __doc__, "docs/benchmarks.md",
                         usage="%(prog)s --frame0 IMG --frame1 IMG [--time_period T [T ...] | --num_frames N] "
                               "[options]")
    parser.add_argument("--frame0", required=True, metavar="IMG", help="first image (PNG/JPEG, 8 or 16 bits)")
    parser.add_argument("--frame1", required=True, metavar="IMG", help="second image, same size")
    times = parser.add_mutually_exclusive_group()
    times.add_argument("--time_period", type=float, nargs="+", default=None, metavar="T",
                       help="time(s) in [0, 1] of the frames to synthesise (default: 0.5)")
    times.add_argument("--num_frames", type=int, default=None, metavar="N",
                       help="N evenly spaced frames at k/(N+1), k = 1..N")
    parser.add_argument("--output_dir", default=os.path.join("demo", "output"), metavar="DIR",
                        help="where to write the results (default: demo/output)")
    parser.add_argument("--gt", default=None, metavar="PATH",
                        help="true frame at --gt_time: print the PSNR of the result and of averaging")
    parser.add_argument("--gt_time", type=float, default=0.5, metavar="T", help="time of the --gt frame (default: 0.5)")
    add_model_arguments(parser)
    return parser.parse_args(argv)


def requested_times(args):
    if args.num_frames is not None:
        if args.num_frames < 1:
            raise UsageError(f"--num_frames must be at least 1, got {args.num_frames}")
        return [k / (args.num_frames + 1) for k in range(1, args.num_frames + 1)]
    times = args.time_period or [0.5]
    bad = [t for t in times if not (math.isfinite(t) and 0.0 <= t <= 1.0)]
    if bad:
        raise UsageError(f"time_period must lie in [0, 1], got {', '.join(f'{t:g}' for t in bad)}")
    return list(dict.fromkeys(times))  # drop repeats, keep the order


def time_label(t):
    return f"{t:.4f}".rstrip("0").rstrip(".") if t else "0"


def output_prefix(path0, path1):
    """bikes_0.png + bikes_2.png -> "bikes"; unrelated names -> the first stem."""
    stem0 = os.path.splitext(os.path.basename(path0))[0]
    stem1 = os.path.splitext(os.path.basename(path1))[0]
    common = os.path.commonprefix([stem0, stem1]).rstrip("_-. ")
    return common or stem0


def load_pair(path0, path1):
    """Read two images; same size required; if one is 16-bit both become 16-bit."""
    frame0, frame1 = read_image(path0), read_image(path1)
    if frame0.shape != frame1.shape:
        raise UsageError(f"frame sizes differ: {path0} is {frame0.shape[1]}x{frame0.shape[0]}, "
                         f"{path1} is {frame1.shape[1]}x{frame1.shape[0]}")
    if frame0.dtype != frame1.dtype:  # uint8 + uint16: promote the 8-bit one exactly (x 257)
        frame0, frame1 = (f.astype(np.uint16) * 257 if f.dtype == np.uint8 else f for f in (frame0, frame1))
    return frame0, frame1


def flow_images(bi_flow):
    """1 x 4 x H x W flow -> (flow 0->1, flow 1->0) colour images on one common scale, and that scale (the
    largest motion in pixels, shown at full saturation)."""
    width = bi_flow.shape[-1]
    both = np.concatenate([bi_flow[0, 0:2].numpy(), bi_flow[0, 2:4].numpy()], axis=2)  # 2 x H x 2W
    colour = flow_to_color(np.ascontiguousarray(both.transpose(1, 2, 0)))
    largest = float(np.sqrt((both ** 2).sum(axis=0)).max())
    return np.ascontiguousarray(colour[:, :width]), np.ascontiguousarray(colour[:, width:]), largest


def _tile(image, label, scale):
    image = to_uint8(image)
    height, width = image.shape[:2]
    if scale != 1:
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
        image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=interpolation)
    band = np.full((LABEL_HEIGHT, image.shape[1], 3), 40, np.uint8)
    cv2.putText(band, label, (6, LABEL_HEIGHT - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([band, image], axis=0)


def make_sheet(frame0, frame1, results, flow01, flow10, largest_motion=None):
    """frame0, the results (t, frame) and frame1 in time order, three per row; then flow 0->1 | average of
    the inputs (what naive blending gives) | flow 1->0."""
    width = frame0.shape[1]
    scale = TILE_MAX / width if width > TILE_MAX else (math.ceil(TILE_MIN / width) if width < TILE_MIN else 1)
    average = (frame0.astype(np.float64) + frame1.astype(np.float64)) / 2
    average = (average + 0.5).astype(frame0.dtype)
    sequence = ([_tile(frame0, "frame0 (t=0)", scale)]
                + [_tile(img, f"UPR-Net t={time_label(t)}", scale) for t, img in results]
                + [_tile(frame1, "frame1 (t=1)", scale)])
    blank = np.full_like(sequence[0], 255)
    sequence += [blank] * (-len(sequence) % 3)
    rows = [np.concatenate(sequence[i:i + 3], axis=1) for i in range(0, len(sequence), 3)]
    scale_note = f" (max {largest_motion:.1f} px)" if largest_motion is not None else ""
    rows.append(np.concatenate([_tile(flow01, "flow 0->1" + scale_note, scale),
                                _tile(average, "average of inputs", scale),
                                _tile(flow10, "flow 1->0" + scale_note, scale)], axis=1))
    gap = lambda row: np.full((4, row.shape[1], 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (row, gap(row))][:-1], axis=0)


def write_frame(path, image):
    """Write RGB uint8 or uint16 as PNG (write_image handles both through OpenCV)."""
    write_image(path, image)
    return path


@cli_main
def main(argv=None):
    args = parse_args(argv)
    times = requested_times(args)
    if args.gt is not None and not (math.isfinite(args.gt_time) and 0.0 <= args.gt_time <= 1.0):
        raise UsageError(f"--gt_time must lie in [0, 1], got {args.gt_time:g}")
    frame0, frame1 = load_pair(args.frame0, args.frame1)
    gt = None
    if args.gt is not None:
        gt = read_image(args.gt)
        if gt.shape[:2] != frame0.shape[:2]:
            raise UsageError(f"frame sizes differ: ground truth {args.gt} is {gt.shape[1]}x{gt.shape[0]}, "
                             f"the inputs are {frame0.shape[1]}x{frame0.shape[0]}")
    interpolator = interpolator_from_args(args)

    height, width = frame0.shape[:2]
    pyr_level, skipped = interpolator.pyramid_for(height, width)
    checkpoint = args.model_file or os.path.relpath(model_file_from_args(args))
    print(f"UPR-Net {args.model_size} from {checkpoint} on {interpolator.device}; {width}x{height}, "
          f"{frame0.dtype.itemsize * 8}-bit, pyramid levels {pyr_level} (skipped {skipped})")

    all_times = times + ([args.gt_time] if gt is not None and args.gt_time not in times else [])
    frames, bi_flow = interpolator.interpolate(frame0, frame1, all_times, return_flow=True)
    results = list(zip(times, frames[:len(times)]))

    prefix = os.path.join(args.output_dir, output_prefix(args.frame0, args.frame1))
    written = [write_frame(f"{prefix}_interp_t{time_label(t)}.png", img) for t, img in results]
    flow01, flow10, largest = flow_images(bi_flow)
    written += [write_frame(f"{prefix}_flow_0to1.png", flow01), write_frame(f"{prefix}_flow_1to0.png", flow10)]
    sheet = make_sheet(frame0, frame1, results, flow01, flow10, largest)
    written.append(write_frame(f"{prefix}_sheet.png", sheet))
    print(f"largest motion between the inputs: {largest:.1f} px")
    print(f"wrote {len(written)} files to {args.output_dir}:")
    for path in written:
        print(f"  {path}")

    if gt is not None:
        result = frames[all_times.index(args.gt_time)]
        average = ((frame0.astype(np.float64) + frame1.astype(np.float64)) / 2 + 0.5).astype(frame0.dtype)
        target = image_to_tensor(gt)
        ours, naive = (float(psnr(image_to_tensor(img), target)[0]) for img in (result, average))
        print(f"PSNR vs {args.gt} at t={time_label(args.gt_time)}: UPR-Net {ours:.2f} dB, "
              f"averaging the inputs {naive:.2f} dB ({ours - naive:+.2f} dB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
