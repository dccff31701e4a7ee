"""Decode videos once into an on-disk frame cache that training reads lazily (footage larger than memory).

    python -m tools.prepare_videos --videos ../shared/videos --cache ../upr-video-cache

Every clip (any container PyAV decodes, or a folder of frames) is streamed into ``<cache>/<clip>-<hash>.rgb``
(raw uint8 RGB frames) with its frame count, size, rate and scene-cut scores in ``<cache>/manifest.json``
(see :mod:`core.data.video_cache`). Resumable: clips already prepared from unchanged sources are skipped, a
clip interrupted half-way is decoded again. ``tools.train --dataset videos --video_cache DIR`` prepares the
cache itself when needed; this tool does it ahead of time and reports what is there.
"""
import argparse
import os

from core.cli import UsageError, cli_main
from core.data.video_cache import cut_indices, prepare_cache
from core.data.video_frames import list_video_sources
from core.video import DEFAULT_SCENE_THRESHOLD


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.prepare_videos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", nargs="+", required=True, help="video files, frame folders, or folders of them")
    parser.add_argument("--cache", required=True, help="cache folder (created if needed)")
    parser.add_argument("--scene_threshold", type=float, default=DEFAULT_SCENE_THRESHOLD,
                        help="only for the report: cuts are stored as scores, any threshold applies later")
    args = parser.parse_args(argv)
    if os.path.exists(args.cache) and not os.path.isdir(args.cache):
        raise UsageError(f"--cache {args.cache} exists and is not a folder")
    sources = list_video_sources(args.videos)
    if not sources:
        raise UsageError(f"no videos or frame folders in {' '.join(args.videos)}")
    entries = prepare_cache(sources, args.cache)
    total_frames = total_bytes = 0
    for source, entry in zip(sources, entries):
        cuts = cut_indices(entry, args.scene_threshold)
        total_frames += entry["frames"]
        total_bytes += entry["frames"] * entry["height"] * entry["width"] * 3
        note = f"; {entry['decode_error']}" if entry["decode_error"] else ""
        print(f"{os.path.basename(os.path.normpath(source))}: {entry['frames']} frames {entry['width']}x"
              f"{entry['height']} at {entry['fps']:.3f} fps, cuts after {cuts or 'none'}{note}")
    print(f"{len(entries)} clips, {total_frames} frames, {total_bytes / 2 ** 30:.2f} GiB in {os.path.abspath(args.cache)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
