"""Whole clips in memory for training: expanding source paths and decoding them with :mod:`core.video`."""
import os
import warnings

from ..video import VIDEO_EXTENSIONS, VideoDecodeWarning, list_frame_files, open_reader, to_uint8


def read_all_frames(source):
    """All frames of a video file or a folder of PNG frames, as a list of H x W x 3 uint8 RGB arrays.

    A video whose tail cannot be decoded (e.g. tree.avi after 68 frames) keeps the frames decoded so far.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoDecodeWarning)
        with open_reader(source) as reader:
            return [to_uint8(frame) for frame in reader]


def list_video_sources(sources):
    """Expand paths into clips: video files and PNG frame folders; a folder holding videos or frame folders
    (and no PNG frames itself) is expanded one level."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    clips = []
    for source in map(os.fspath, sources):
        if not os.path.exists(source):
            raise FileNotFoundError(f"video source not found: {source}")
        if os.path.isfile(source) or list_frame_files(source):
            clips.append(source)
            continue
        entries = sorted(os.path.join(source, e) for e in os.listdir(source))
        clips += [e for e in entries if e.lower().endswith(VIDEO_EXTENSIONS) or os.path.isdir(e)]
    return clips

