"""Output written in segments that are committed atomically, the job manifest, and the join without re-encoding.

Layout of a job writing ``OUT`` (a video file or a PNG folder)::

    OUT.parts/manifest.json          input identity, the options that change the output, segment length
    OUT.parts/seg_000003.mp4         video: segment 3 encoded on its own (starts with a keyframe)
    OUT.parts/seg_000003.json        the commit record of segment 3: written last, atomically

A segment counts as done only once its record exists; everything is written under a temporary name and
``os.replace``d, so a job killed at any moment (SIGKILL, power loss) leaves only whole files behind. PNG output
goes straight into the output folder (each frame written to a temporary name, then renamed; the frame names are
global, so a redone segment rewrites the same files). :func:`join_video` copies the packets of the parts into
the final container with shifted timestamps (no re-encoding) and copies the source's audio beside them, into a
temporary file renamed onto ``OUT`` at the end.
"""
import fractions
import hashlib
import json
import os
import shutil

import cv2
import numpy as np

from ..frames import to_rgb, to_uint8
from ..video import VideoError, VideoWriter, _AudioPassThrough, av

MANIFEST_VERSION = 1
PNG_PATTERN = "frame_{:06d}.png"
_HASH_BYTES = 1 << 20


def parts_folder(output):
    """The folder of ``output``'s parts and manifest: ``<output>.parts`` (without a trailing separator)."""
    return os.path.normpath(os.path.abspath(output)) + ".parts"


def write_json_atomic(path, data):
    """Write ``data`` as JSON to ``path`` through a temporary file and ``os.replace`` (never half-written)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path):
    """The JSON in ``path``, or None when it is missing or unreadable (a file half-written by another tool)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _hash_ends(path, digest):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        digest.update(f.read(_HASH_BYTES))
        if size > _HASH_BYTES:
            f.seek(max(_HASH_BYTES, size - _HASH_BYTES))
            digest.update(f.read(_HASH_BYTES))


def input_identity(path, files=None):
    """What tells an input apart from a changed one: its path, size, mtime and a SHA-256 of its first and last
    MiB; for a frame folder (``files``: its frame files) the names, sizes and mtimes of all files and the hash of
    the first and last one."""
    path = os.path.abspath(path)
    digest = hashlib.sha256()
    if files is None:
        stat = os.stat(path)
        _hash_ends(path, digest)
        return {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_ends": digest.hexdigest()}
    listing = hashlib.sha256()
    total = 0
    for name in files:
        stat = os.stat(name)
        total += stat.st_size
        listing.update(f"{os.path.basename(name)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for name in dict.fromkeys((files[0], files[-1])):   # in order (a set would vary between processes)
        _hash_ends(name, digest)
    return {"path": path, "files": len(files), "size": total, "listing": listing.hexdigest(),
            "sha256_ends": digest.hexdigest()}


def describe_difference(old, new, prefix=""):
    """The first key whose value differs between two manifest dicts, as 'key: old -> new' (None if equal)."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = describe_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: {a} -> {b}"
    return None


class Parts:
    """The parts folder of one job: manifest, segment records and files. ``ext``: the video extension of the
    parts (the output's), or None for PNG output."""

    def __init__(self, output, ext=None):
        self.output = os.path.abspath(output)
        self.folder = parts_folder(output)
        self.ext = ext

    @property
    def manifest_path(self):
        return os.path.join(self.folder, "manifest.json")

    def exists(self):
        return os.path.isdir(self.folder)

    def manifest(self):
        return read_json(self.manifest_path)

    def create(self, manifest):
        os.makedirs(self.folder, exist_ok=True)
        write_json_atomic(self.manifest_path, manifest)

    def remove(self):
        """Delete the folder, the manifest last (a kill half-way leaves a folder that still says what it is)."""
        if not self.exists():
            return
        for name in os.listdir(self.folder):
            if name != "manifest.json":
                path = os.path.join(self.folder, name)
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
        shutil.rmtree(self.folder, ignore_errors=True)

    def mark_joined(self, info):
        """Record in the manifest that the output is complete (``info``: its size and counts), before it is
        renamed into place: a job killed between that rename and the removal of the parts is seen as done."""
        manifest = self.manifest() or {}
        manifest["joined"] = info
        write_json_atomic(self.manifest_path, manifest)

    def record_path(self, index):
        return os.path.join(self.folder, f"seg_{index:06d}.json")

    def part_path(self, index):
        return os.path.join(self.folder, f"seg_{index:06d}{self.ext}")

    def record(self, index):
        """The commit record of segment ``index``, or None when it is not done."""
        record = read_json(self.record_path(index))
        if record is None or record.get("index") != index:
            return None
        if self.ext and record.get("frames_out") and not os.path.isfile(self.part_path(index)):
            return None
        return record

    def done(self):
        """{index: record} of the committed segments."""
        found = {}
        if not self.exists():
            return found
        for name in os.listdir(self.folder):
            if name.startswith("seg_") and name.endswith(".json"):
                try:
                    index = int(name[4:-5])
                except ValueError:
                    continue
                record = self.record(index)
                if record is not None:
                    found[index] = record
        return found

    def commit(self, record):
        write_json_atomic(self.record_path(record["index"]), record)


class VideoSegmentWriter:
    """Encodes the output frames of one segment to ``parts.part_path(index)`` (through a temporary name); the
    same encoder settings for every segment, each file starting with a keyframe. ``commit(record)`` closes,
    renames and writes the record; ``abort()`` drops the temporary file."""

    def __init__(self, parts, index, fps, width, height, color_tags=None, codec=None, crf=None):
        self.parts, self.index = parts, index
        self.final = parts.part_path(index)
        self.tmp = os.path.join(parts.folder, f".tmp{os.getpid()}_seg_{index:06d}{parts.ext}")
        options = dict(color_tags=color_tags, codec=codec)
        if crf is not None:
            options["crf"] = crf
        self.args = (self.tmp, fps, width, height)
        self.options = options
        self.writer = None
        self.frames_written = 0

    def write(self, frame):
        if self.writer is None:
            self.writer = VideoWriter(*self.args, **self.options)
        self.writer.write(frame)
        self.frames_written += 1

    def commit(self, record):
        if self.writer is not None:
            self.writer.close()
            os.replace(self.tmp, self.final)
        self.parts.commit(record)

    def abort(self):
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:
                pass
            try:
                os.remove(self.tmp)
            except OSError:
                pass


class PngSegmentWriter:
    """Writes output frame j to ``<folder>/frame_<j>.png`` (8 or 16 bit as given) through a temporary name;
    ``commit(record)`` writes the segment's record once its last frame is on disk."""

    def __init__(self, parts, index, folder, first_output):
        self.parts, self.index, self.folder = parts, index, folder
        self.next = first_output
        self.frames_written = 0

    def write(self, frame):
        frame = to_rgb(frame)
        if frame.dtype not in (np.uint8, np.uint16):
            frame = to_uint8(frame)
        final = os.path.join(self.folder, PNG_PATTERN.format(self.next))
        tmp = os.path.join(self.folder, f".tmp{os.getpid()}_{PNG_PATTERN.format(self.next)}")
        if not cv2.imwrite(tmp, np.ascontiguousarray(frame[:, :, ::-1])):
            raise VideoError(f"cannot write frame {final}")
        os.replace(tmp, final)
        self.next += 1
        self.frames_written += 1

    def commit(self, record):
        self.parts.commit(record)

    def abort(self):
        pass


def _frames(value, time_base, fps):
    """A timestamp in ``time_base`` units -> whole output frames at ``fps``."""
    return None if value is None else round(value * time_base * fps)


def _reorder_delay(path, fps):
    """How many frames the first decode time of the encoded part ``path`` lies before its first presentation
    time (x264's B-frame reordering; 0 without B-frames)."""
    with av.open(path) as part:
        source = part.streams.video[0]
        for packet in part.demux(source):
            if packet.size and packet.dts is not None and packet.pts is not None:
                return max(0, _frames(packet.pts, packet.time_base, fps) - _frames(packet.dts, packet.time_base, fps))
    return 0


def join_video(parts, records, output, fps, audio=None, overwrite=True, before_rename=None):
    """Join the committed parts (``records``: the segment records in order, each with ``first_output`` and
    ``frames_out``) into ``output`` without re-encoding: every packet copied with its timestamps shifted to the
    segment's first output frame. ``audio``: (source, offset seconds, keep range) for
    :class:`core.video._AudioPassThrough`, or None. The result appears under ``output`` only complete (written to
    a temporary file in the parts folder, then renamed; ``before_rename(size, audio pass-through or None)`` is
    called just before). Returns (the number of video packets copied, the audio pass-through or None)."""
    if av is None:
        raise VideoError(f"cannot write video {output}: PyAV is not installed (pip install av)")
    fps = fractions.Fraction(fps)
    frame_base = 1 / fps
    records = [record for record in records if record.get("frames_out")]
    delay = max((_reorder_delay(parts.part_path(record["index"]), fps) for record in records), default=0)
    tmp = os.path.join(parts.folder, f".joined{os.getpid()}{parts.ext}")
    container = av.open(tmp, mode="w")
    copied = 0
    passthrough = None
    try:
        stream = None
        for record in records:
            with av.open(parts.part_path(record["index"])) as part:
                source = part.streams.video[0]
                if stream is None:
                    stream = container.add_stream_from_template(source)
                    if audio is not None:
                        passthrough = _AudioPassThrough(audio[0], container, audio[1], audio[2])
                shift = record["first_output"]
                packets = (packet for packet in part.demux(source) if packet.size)
                for decode_index, packet in enumerate(packets):
                    base = packet.time_base
                    pts = _frames(packet.pts, base, fps)
                    duration = _frames(packet.duration, base, fps) if packet.duration else 1
                    packet.time_base = frame_base
                    packet.pts = None if pts is None else pts + shift
                    # one decode step per output frame across the whole file: a short part encoded with less
                    # reordering (fewer B-frames) would otherwise leave a gap in the decode times, which the
                    # container reads as a lower average frame rate
                    packet.dts = decode_index - delay + shift
                    packet.duration = max(1, duration)
                    packet.stream = stream
                    if passthrough is not None:
                        passthrough.feed(until=float((packet.dts + 1) / fps))
                    container.mux(packet)
                    copied += 1
        if stream is None:
            raise VideoError(f"no frames to write to {output}")
        if passthrough is not None:
            passthrough.feed(None)
    except BaseException:
        if passthrough is not None:
            passthrough.close()
        container.close()
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    if passthrough is not None:
        passthrough.close()
    container.close()
    if os.path.exists(output) and not overwrite:
        os.remove(tmp)
        raise VideoError(f"output {output} appeared while the job ran; it was left alone")
    if before_rename is not None:
        before_rename(os.path.getsize(tmp), passthrough)
    os.replace(tmp, output)
    return copied, passthrough
