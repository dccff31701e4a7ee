"""An on-disk frame cache for training on footage far larger than memory.

``prepare_cache(sources, cache_dir)`` decodes every clip once (PyAV, or a frame folder) and streams its frames
into one raw file per clip, ``<cache_dir>/<key>.rgb`` (frames x H x W x 3 uint8, frame after frame), so at
most one frame is in memory while preparing. ``<cache_dir>/manifest.json`` records, per clip, its source path,
the source file's size and modification time, frame count, size, frame rate, whether decoding stopped early,
and the scene-cut score of every consecutive pair (:func:`core.video.scene_cut_score`), from which the cuts at
any threshold follow. It is written atomically after every clip, so an interrupted preparation resumes where it
stopped, and a clip whose source changed is prepared again. Concurrent preparers (the ranks of one run) take
turns through a lock file; the first does the work.

``CachedFrames`` reads one frame with one ``os.preadv``: a data worker holds only the frames of its current
sample, and the operating system's page cache, not the processes, keeps what is hot.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import re
import warnings

import numpy as np
from tqdm import tqdm

from ..frames import to_uint8
from ..video import VideoDecodeWarning, grey_thumbnail, open_reader

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def clip_key(source):
    """A file name for ``source``'s frames: its base name plus a hash of its absolute path."""
    path = os.path.abspath(os.fspath(source))
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(os.path.normpath(path)))[:60]
    return f"{stem}-{hashlib.sha1(path.encode()).hexdigest()[:10]}"


def source_stamp(source):
    """(bytes, mtime) of a file; for a frame folder the sum over its entries and the newest time."""
    if os.path.isdir(source):
        sizes = [os.stat(os.path.join(source, n)) for n in os.listdir(source)]
        return sum(s.st_size for s in sizes), max((s.st_mtime for s in sizes), default=0.0)
    stat = os.stat(source)
    return stat.st_size, stat.st_mtime


def read_clip_manifest(path, version):
    """The "clips" of the JSON manifest ``path`` ({name: entry}); empty if there is none, or one of another
    ``version``."""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        manifest = json.load(f)
    return manifest["clips"] if manifest.get("version") == version else {}


def write_clip_manifest(path, version, clips, **fields):
    """Write the JSON manifest ``path`` ({"version", "clips", **fields}) atomically (write, then rename)."""
    with open(path + ".tmp", "w") as f:
        json.dump({"version": version, "clips": clips, **fields}, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def read_manifest(cache_dir):
    """The cache manifest's clips ({key: entry}); empty if there is none yet."""
    return read_clip_manifest(os.path.join(cache_dir, MANIFEST), FORMAT_VERSION)


def _entry_is_current(cache_dir, entry, source):
    size, mtime = source_stamp(source)
    data = os.path.join(cache_dir, entry["file"])
    frame_bytes = entry["height"] * entry["width"] * 3
    return (entry["source_bytes"] == size and abs(entry["source_mtime"] - mtime) < 1e-3 and os.path.isfile(data)
            and os.path.getsize(data) == entry["frames"] * frame_bytes)


def _prepare_clip(source, cache_dir, key):
    """Decode ``source`` into ``<key>.rgb`` (written as .partial, then renamed); returns its manifest entry."""
    data = os.path.join(cache_dir, key + ".rgb")
    partial = data + ".partial"
    scores, previous, shape, count = [], None, None, 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VideoDecodeWarning)
        with open_reader(source) as reader, open(partial, "wb") as out:
            fps = float(reader.fps)
            for frame in tqdm(reader, desc=os.path.basename(os.path.normpath(source)), unit="frame",
                              total=reader.frame_count or None, leave=False, mininterval=2):
                frame = np.ascontiguousarray(to_uint8(frame))
                if shape is None:
                    shape = frame.shape
                elif frame.shape != shape:
                    raise ValueError(f"{source}: frame {count} is {frame.shape[1]}x{frame.shape[0]}, "
                                     f"the first is {shape[1]}x{shape[0]}")
                thumbnail = grey_thumbnail(frame)
                if previous is not None:
                    scores.append(round(float(np.abs(thumbnail - previous).mean()), 6))
                previous = thumbnail
                out.write(frame.tobytes())
                count += 1
    decode_error = next((str(w.message) for w in caught if issubclass(w.category, VideoDecodeWarning)), None)
    os.replace(partial, data)
    size, mtime = source_stamp(source)
    return {"source": os.path.abspath(source), "file": os.path.basename(data), "frames": count,
            "height": shape[0], "width": shape[1], "fps": fps, "cut_scores": scores,
            "decode_error": decode_error, "source_bytes": size, "source_mtime": mtime}


@contextlib.contextmanager
def _locked(cache_dir):
    with open(os.path.join(cache_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare_cache(sources, cache_dir, progress=True):
    """Make sure every clip of ``sources`` (paths from :func:`core.data.video_frames.list_video_sources`) is in
    the cache; returns their manifest entries in the order given. Clips already prepared from an unchanged
    source are not decoded again."""
    os.makedirs(cache_dir, exist_ok=True)
    entries = []
    with _locked(cache_dir):
        clips = read_manifest(cache_dir)
        for source in tqdm(sources, desc="preparing clips", unit="clip", disable=not progress):
            key = clip_key(source)
            entry = clips.get(key)
            if entry is None or not _entry_is_current(cache_dir, entry, source):
                entry = _prepare_clip(source, cache_dir, key)
                clips[key] = entry
                write_clip_manifest(os.path.join(cache_dir, MANIFEST), FORMAT_VERSION, clips)
            entries.append(entry)
    return entries


def cut_indices(entry, threshold):
    """Indices i with a scene cut between frames i and i+1 (as :func:`core.video.find_scene_cuts`)."""
    if threshold is None or threshold <= 0:
        return []
    return [i for i, score in enumerate(entry["cut_scores"]) if score > threshold]


class CachedFrames:
    """The frames of one cached clip as a read-only sequence: ``frames[i]`` is an H x W x 3 uint8 array read
    from disk. Picklable (data workers reopen the file)."""

    def __init__(self, cache_dir, entry):
        self.path = os.path.join(cache_dir, entry["file"])
        self.shape = (entry["height"], entry["width"], 3)
        self.count = entry["frames"]
        self._fd, self._pid = None, None

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(f"frame {index} of a {self.count}-frame clip")
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        frame = np.empty(self.shape, np.uint8)
        read = os.preadv(self._fd, [frame], index * frame.nbytes)
        if read != frame.nbytes:
            raise OSError(f"{self.path}: frame {index} is truncated ({read} of {frame.nbytes} bytes)")
        return frame

    def __iter__(self):
        return (self[i] for i in range(self.count))

    def __getstate__(self):
        return {"path": self.path, "shape": self.shape, "count": self.count}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fd, self._pid = None, None

    def __del__(self):
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)


class FrameRefs:
    """A sequence of frames given as arrays or as (frame sequence, index) references that are read only when
    accessed, e.g. texture frames drawn from cached clips."""

    def __init__(self, items):
        self.items = list(items)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        item = self.items[index]
        return item if isinstance(item, np.ndarray) else item[0][item[1]]
