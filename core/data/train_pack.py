"""A compact, re-creatable pack of training clips that travels to a machine without PyAV (the lent GPU).

``make_pack(sources, pack_dir)`` re-encodes every clip (a video in any container PyAV reads, or a folder of
frames) to ``<pack_dir>/<stem>.mp4``: H.264 (CRF :data:`DEFAULT_CRF`, yuv420p, BT.601), no audio, the clip's
frame rate, frames in order. H.264 in MP4 is what OpenCV's FFmpeg backend decodes everywhere, so
:func:`core.video.open_reader` reads the pack where PyAV is missing (:class:`core.video.OpenCVVideoReader`).
``<pack_dir>/pack.json`` records, per clip, its source (path, bytes, modification time), frame count, size and
rate; clips whose source is unchanged are skipped when the command runs again (each clip is written into
``.partial/`` and renamed, the manifest after every clip: an interrupted run loses at most the clip in hand).

The pack is lossy (one more H.264 generation): validation PSNR on it is comparable with itself (the starting
weights are scored on the same pack), not with scores on the original files.
"""
import os
import re

from tqdm import tqdm

from ..video import open_reader, open_writer
from .video_cache import read_clip_manifest, source_stamp, write_clip_manifest

MANIFEST = "pack.json"
FORMAT_VERSION = 1
DEFAULT_CRF = 24


def pack_name(source):
    """The pack's file name for ``source``: its stem (file name without extension, or folder name) + ".mp4"."""
    stem = os.path.splitext(os.path.basename(os.path.normpath(os.fspath(source))))[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) + ".mp4"


def read_pack_manifest(pack_dir):
    """{file name: entry} of the pack's clips; empty if there is no manifest (or one of another version)."""
    return read_clip_manifest(os.path.join(pack_dir, MANIFEST), FORMAT_VERSION)


def make_pack(sources, pack_dir, crf=DEFAULT_CRF, progress=True):
    """Re-encode ``sources`` (clip paths, see :func:`core.data.video_frames.list_video_sources`) into
    ``pack_dir``; returns the manifest's entries in the order of ``sources``. Two sources with one stem are an
    error (their pack files would collide)."""
    names = [pack_name(source) for source in sources]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"sources with the same name would share pack file(s) {', '.join(clashes)}")
    os.makedirs(pack_dir, exist_ok=True)
    clips = read_pack_manifest(pack_dir)
    bar = tqdm(total=len(sources), desc="packing clips", unit="clip", disable=not progress)
    for source, name in zip(sources, names):
        size, mtime = source_stamp(source)
        entry = clips.get(name)
        target = os.path.join(pack_dir, name)
        if entry and (entry["source_bytes"], entry["source_mtime"], entry["crf"]) == (size, mtime, crf) \
                and os.path.isfile(target):
            bar.update()
            continue
        os.makedirs(os.path.join(pack_dir, ".partial"), exist_ok=True)   # not listed as a clip of the pack
        temporary = os.path.join(pack_dir, ".partial", name)
        frames = 0
        with open_reader(source) as reader:
            with open_writer(temporary, reader.fps, reader.width, reader.height, crf=crf) as writer:
                for frame in reader:
                    writer.write(frame)
                    frames += 1
            fps = str(reader.fps)
            width, height = reader.width, reader.height
        os.replace(temporary, target)
        clips[name] = {"source": os.path.abspath(source), "source_bytes": size, "source_mtime": mtime, "crf": crf,
                       "frames": frames, "fps": fps, "width": width, "height": height,
                       "bytes": os.path.getsize(target)}
        write_clip_manifest(os.path.join(pack_dir, MANIFEST), FORMAT_VERSION, clips, crf=crf)
        bar.update()
    bar.close()
    return [clips[name] for name in names]
