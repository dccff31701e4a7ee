"""Whole clips in memory for training: expanding source paths and decoding them with :mod:`core.video`."""
import os
import warnings

from ..frames import to_uint8
from ..video import VideoDecodeWarning, is_video_file, list_frame_files, open_reader


def read_all_frames(source):
    """All frames of a video file or a folder of PNG frames, as a list of H x W x 3 uint8 RGB arrays.

    A video whose tail cannot be decoded (e.g. tree.avi after 68 frames) keeps the frames decoded so far.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoDecodeWarning)
        with open_reader(source) as reader:
            return [to_uint8(frame) for frame in reader]


def list_video_sources(sources):
    """Expand paths into clips: video files (any container PyAV decodes: :func:`core.video.is_video_file`) and
    frame folders. A folder holding videos or frame folders is expanded one level (lone images beside them, a
    poster say, are ignored); a folder of frames alone is one clip."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    clips = []
    for source in map(os.fspath, sources):
        if not os.path.exists(source):
            raise FileNotFoundError(f"video source not found: {source}")
        if os.path.isfile(source):
            clips.append(source)
            continue
        entries = sorted(os.path.join(source, e) for e in os.listdir(source))
        inside = [e for e in entries if is_video_file(e) or (os.path.isdir(e) and list_frame_files(e))]
        clips += inside if inside or not list_frame_files(source) else [source]
    return clips
