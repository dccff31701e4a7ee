"""Video and frame-folder I/O with PyAV, exact BT.601 colour conversion, audio pass-through, scene cuts.

Reading::

    with open_reader("clip.mp4") as reader:          # or a folder of PNG frames
        print(reader.fps, reader.width, reader.height, reader.frame_count, reader.audio)
        for rgb in reader:                           # H x W x 3 RGB uint8 (uint16 for 16-bit PNG folders)
            ...

Writing::

    with open_writer("out.mp4", fps, width, height, audio_source="clip.mp4") as writer:
        writer.write(rgb)

Colours. Decoded yuv420p frames are converted with OpenCV's BT.601 (limited range) I420 conversion, which is
exact and the same on every machine; other pixel formats (rgb24 from Cinepak, 4:2:2, full-range 'yuvj') go
through PyAV's own converter. Encoding uses OpenCV's matching RGB -> I420 conversion, so a frame read and
written again comes back with the same Y'CbCr values up to rounding. The output carries the input's colour
tags (matrix, primaries, transfer), so players show it as they show the input; frames from PNG folders are
tagged BT.601 (smpte170m). The range is always tagged limited ("tv"), which is what the conversion produces.

Odd sizes. 4:2:0 video needs even widths and heights, and H.264 cannot signal a one-pixel crop in 4:2:0, so
frames of odd size are padded by repeating their last row / column before encoding: a 63x47 clip is stored
as 64x48 (the PNG-folder writer keeps the exact size). Odd-size 4:2:0 input decodes to its exact size.

Without PyAV (``import av`` fails, as on images that ship only OpenCV) videos are still read, through OpenCV's
FFmpeg backend (:class:`OpenCVVideoReader`: OpenCV's colour conversion, no audio); writing video needs PyAV.

Codecs. H.264 (libx264, CRF 18, yuv420p) when PyAV's FFmpeg has it, else MPEG-4 Part 2; VP9 for .webm.

Audio. The first audio stream of the source is copied packet by packet into the output, unchanged (no
re-encode), with its timestamps shifted so that it keeps its position relative to the first video frame;
packets are interleaved with the video as it is written. If the container cannot hold that codec (e.g. AC-3
or PCM into .webm) the audio is decoded and re-encoded to AAC (Opus for .webm) instead.

Scene cuts. :func:`scene_cut_score` is the mean absolute difference, in [0, 1], of two grey thumbnails whose
long side is 16 pixels (area-averaged, so motion mostly averages out while a change of shot does not). A
pair is a cut when the score exceeds :data:`DEFAULT_SCENE_THRESHOLD` = 0.10. Measured on the project's
clips: genuine cuts score 0.138-0.301 (bikes.mp4 0.149-0.301, a film trailer 0.138-0.159); the largest score
between frames of one shot is 0.066 (fast motion in bikes.mp4 and in the sparse frames of tree.avi), 0.015
on carphone.
"""
import dataclasses
import fractions
import io
import os
import warnings

try:
    import av
except ImportError:   # an image without PyAV (the GPU machines): videos are read through OpenCV, not written
    av = None
import cv2
import numpy as np

from .frames import FrameError, natural_key, read_image, to_float, to_rgb, to_uint8

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm")
"""Output paths with these extensions are written as videos; anything else is a folder of PNG frames."""

READ_VIDEO_EXTENSIONS = VIDEO_EXTENSIONS + (
    ".ogg", ".ogv", ".mpg", ".mpeg", ".m1v", ".m2v", ".vob", ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".asf",
    ".y4m", ".3gp", ".3g2", ".mxf", ".dv", ".nut", ".gif", ".rm", ".rmvb", ".divx", ".f4v", ".h264", ".hevc")
"""Files with these extensions are taken for videos when a folder is scanned; any other file that is not a
frame image or an obvious non-video is probed with PyAV (:func:`is_video_file`)."""

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""Frame folders hold images with these extensions (8- or 16-bit, grey or colour)."""

_NOT_VIDEO_EXTENSIONS = FRAME_EXTENSIONS + (".md", ".txt", ".json", ".csv", ".tsv", ".py", ".yaml", ".yml",
                                            ".pdf", ".html", ".xml", ".srt", ".vtt", ".pt", ".pkl", ".npy")

DEFAULT_SCENE_THRESHOLD = 0.10
"""Scene-cut threshold on :func:`scene_cut_score` (see the module docstring for how it was chosen)."""

THUMBNAIL_SIZE = 16
"""Long side, in pixels, of the grey thumbnails compared by :func:`scene_cut_score`."""

DEFAULT_CRF = 18


class VideoError(ValueError):
    """A video or frame folder cannot be read or written, with the reason."""


class VideoDecodeWarning(UserWarning):
    """Decoding stopped early: the frames read so far are used."""


# ---------------------------------------------------------------------------------------------- colours

def _plane_array(plane):
    """A PyAV plane as a height x width uint8 array (the line padding dropped)."""
    data = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return data[:, :plane.width]


def yuv420p_to_rgb(frame):
    """A yuv420p ``av.VideoFrame`` (any size, odd too) -> H x W x 3 RGB uint8 with OpenCV's BT.601."""
    width, height = frame.width, frame.height
    y, u, v = (_plane_array(p) for p in frame.planes[:3])
    even_w, even_h = width + width % 2, height + height % 2
    if (even_w, even_h) != (width, height):  # chroma planes already cover the even size; pad luma
        y = np.pad(y, ((0, even_h - height), (0, even_w - width)), mode="edge")
    i420 = np.concatenate([y.reshape(-1), np.ascontiguousarray(u).reshape(-1), np.ascontiguousarray(v).reshape(-1)])
    rgb = cv2.cvtColor(i420.reshape(even_h * 3 // 2, even_w), cv2.COLOR_YUV2RGB_I420)
    return np.ascontiguousarray(rgb[:height, :width])


def frame_to_rgb(frame):
    """A decoded ``av.VideoFrame`` -> H x W x 3 RGB uint8 (BT.601 via OpenCV for yuv420p)."""
    if frame.format.name == "yuv420p":
        return yuv420p_to_rgb(frame)
    return frame.to_ndarray(format="rgb24")


def rgb_to_yuv420p(rgb):
    """H x W x 3 RGB -> a yuv420p ``av.VideoFrame`` (BT.601 limited range via OpenCV), padded to even size by
    repeating the last row / column."""
    rgb = to_uint8(rgb)
    height, width = rgb.shape[:2]
    if height % 2 or width % 2:
        rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return av.VideoFrame.from_ndarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), format="yuv420p")


# ---------------------------------------------------------------------------------------------- reading

class _Closable:
    """``with`` support for readers and writers: leaving the block calls ``close()``."""

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """The first audio stream of a video: what is copied into the output."""
    codec: str
    sample_rate: int
    channels: int
    duration: float  # seconds, or None when the container does not say
    start_time: float  # seconds

    def __str__(self):
        duration = f", {self.duration:.2f} s" if self.duration is not None else ""
        return f"{self.codec} {self.sample_rate} Hz, {self.channels} channel(s){duration}"


def _stream_seconds(stream, value):
    return None if value is None or stream.time_base is None else float(value * stream.time_base)


def _audio_info(stream):
    ctx = stream.codec_context
    duration = _stream_seconds(stream, stream.duration)
    if duration is None and stream.container.duration:
        duration = stream.container.duration / av.time_base
    channels = getattr(ctx, "channels", None) or getattr(getattr(ctx, "layout", None), "nb_channels", 0)
    return AudioInfo(ctx.name, int(ctx.sample_rate or 0), int(channels or 0), duration,
                     _stream_seconds(stream, stream.start_time) or 0.0)


class VideoReader(_Closable):
    """Decodes a video file frame by frame as RGB uint8 arrays (one frame in memory at a time).

    Attributes: ``fps`` (Fraction), ``width``, ``height``, ``frame_count`` (an estimate from the header; the
    true count is known once read: ``frames_read``), ``audio`` (:class:`AudioInfo` or None), ``color_tags``,
    ``first_frame_time`` (seconds, set when the first frame is decoded). Frames are taken as evenly spaced at
    ``fps`` (constant frame rate). A decoding error after at least one frame ends the stream with a warning
    (``decode_error`` keeps it): some files, e.g. tree.avi, have an index longer than their data.
    """

    is_folder = False

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise VideoError(f"video not found: {self.path}")
        try:
            self.container = av.open(self.path)
        except av.FFmpegError as error:
            raise VideoError(f"cannot open video {self.path}: {error}") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"no video stream in {self.path}")
        stream = self.container.streams.video[0]
        self.stream = stream
        ctx = stream.codec_context
        self.width, self.height = ctx.width, ctx.height
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            self.container.close()
            raise VideoError(f"{self.path}: the video stream has no frame rate")
        self.fps = fractions.Fraction(rate)
        self.frame_count = int(stream.frames or 0)
        if not self.frame_count:
            duration = _stream_seconds(stream, stream.duration)
            if duration is None and self.container.duration:
                duration = self.container.duration / av.time_base
            self.frame_count = int(round(duration * self.fps)) if duration else 0
        audio = self.container.streams.audio
        self.audio = _audio_info(audio[0]) if audio else None
        self.color_tags = {key: getattr(ctx, key) for key in ("colorspace", "color_primaries", "color_trc")}
        self.first_frame_time = None
        self.frames_read = 0
        self.decode_error = None

    def __iter__(self):
        failure = None
        try:
            for frame in self.container.decode(self.stream):
                yield self._converted(frame)
        except av.FFmpegError as error:
            failure = error
        if failure is not None:
            try:   # the frames before the bad packet that the decoder still holds (reordering, threads)
                for frame in self.stream.codec_context.decode(None):
                    yield self._converted(frame)
            except av.FFmpegError:
                pass
            if not self.frames_read:
                raise VideoError(f"cannot decode {self.path}: {failure}")
            self.decode_error = f"decoding {self.path} stopped after {self.frames_read} frames: {failure}"
            warnings.warn(self.decode_error, VideoDecodeWarning, stacklevel=2)
        if not self.frames_read:
            raise VideoError(f"no frames could be decoded from {self.path}")

    def _converted(self, frame):
        if self.first_frame_time is None:
            self.first_frame_time = float(frame.time) if frame.time is not None else 0.0
        self.frames_read += 1
        return frame_to_rgb(frame)

    def close(self):
        self.container.close()


class OpenCVVideoReader(_Closable):
    """:class:`VideoReader`'s interface through ``cv2.VideoCapture``, for machines without PyAV: RGB uint8 frames
    converted by OpenCV (BT.601 for SD), no audio, no colour tags. A read that fails ends the stream."""

    is_folder = False
    audio = None
    color_tags = None
    first_frame_time = 0.0
    decode_error = None

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise VideoError(f"video not found: {self.path}")
        self.capture = cv2.VideoCapture(self.path)
        if not self.capture.isOpened():
            raise VideoError(f"cannot open video {self.path} with OpenCV (PyAV is not installed)")
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        rate = self.capture.get(cv2.CAP_PROP_FPS)
        if not rate or not np.isfinite(rate):
            self.capture.release()
            raise VideoError(f"{self.path}: the video stream has no frame rate")
        self.fps = fractions.Fraction(rate).limit_denominator(1001)
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frames_read = 0

    def __iter__(self):
        while True:
            ok, frame = self.capture.read()
            if not ok:
                break
            self.frames_read += 1
            yield np.ascontiguousarray(frame[:, :, ::-1])
        if not self.frames_read:
            raise VideoError(f"no frames could be decoded from {self.path}")

    def close(self):
        self.capture.release()


def list_frame_files(folder):
    """The frame images (:data:`FRAME_EXTENSIONS`) of ``folder`` in natural order (frame2 before frame10); if it
    holds PNGs and other images, the PNGs."""
    names = [n for n in os.listdir(folder) if n.lower().endswith(FRAME_EXTENSIONS)
             and os.path.isfile(os.path.join(folder, n))]
    if any(n.lower().endswith(".png") for n in names):
        names = [n for n in names if n.lower().endswith(".png")]
    return [os.path.join(folder, n) for n in sorted(names, key=natural_key)]


def is_video_file(path):
    """True if ``path`` is a file PyAV can open with a video stream: known extensions
    (:data:`READ_VIDEO_EXTENSIONS`) are taken as they are, frame images and text-like files are not videos,
    anything else is probed."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    extension = os.path.splitext(path)[1].lower()
    if extension in READ_VIDEO_EXTENSIONS:
        return True
    if extension in _NOT_VIDEO_EXTENSIONS or os.path.basename(path).startswith(".") or av is None:
        return False
    try:
        with av.open(path) as container:
            return bool(container.streams.video)
    except (av.FFmpegError, UnicodeDecodeError, ValueError, OSError):
        return False


class FrameFolderReader(_Closable):
    """Reads a folder of image frames (PNG, or JPEG etc. where it holds no PNG; natural sort order) as RGB arrays
    (uint8, or uint16 for 16-bit PNGs).

    Grey and RGBA frames are converted to RGB. All frames must have the size of the first one.
    """

    is_folder = True
    audio = None
    color_tags = None
    first_frame_time = 0.0
    decode_error = None

    def __init__(self, folder, fps=25):
        self.path = os.fspath(folder)
        if not os.path.isdir(self.path):
            raise VideoError(f"frame folder not found: {self.path}")
        self.files = list_frame_files(self.path)
        if not self.files:
            raise VideoError(f"no frame images ({', '.join(FRAME_EXTENSIONS)}) in folder {self.path}")
        self.fps = fractions.Fraction(fps)
        try:
            first = read_image(self.files[0])
        except FrameError as error:
            raise VideoError(str(error)) from None
        self.height, self.width = first.shape[:2]
        self.frame_count = len(self.files)
        self.frames_read = 0

    def __iter__(self):
        for path in self.files:
            try:
                image = read_image(path)
            except FrameError as error:
                raise VideoError(str(error)) from None
            if image.shape[:2] != (self.height, self.width):
                raise VideoError(f"frame sizes differ in {self.path}: {os.path.basename(path)} is "
                                 f"{image.shape[1]}x{image.shape[0]}, the first frame is {self.width}x{self.height}")
            self.frames_read += 1
            yield image



def open_reader(path, fps=None):
    """A :class:`FrameFolderReader` for a folder (at ``fps``, default 25), else a :class:`VideoReader`."""
    if os.path.isdir(path):
        return FrameFolderReader(path, fps or 25)
    reader = VideoReader(path) if av is not None else OpenCVVideoReader(path)
    if fps:  # override a wrong or missing rate in the file
        reader.fps = fractions.Fraction(fps)
    return reader


# ---------------------------------------------------------------------------------------------- writing

def is_folder_output(path):
    """Output goes to a folder of PNGs if ``path`` ends with a separator, is a folder, or has no video
    extension (:data:`VIDEO_EXTENSIONS`)."""
    path = os.fspath(path)
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        return True
    return os.path.splitext(path)[1].lower() not in VIDEO_EXTENSIONS


def _pick_video_codec(container, requested=None):
    if requested:
        candidates = [requested]
    elif container.format.name == "webm":
        candidates = ["libvpx-vp9", "libvpx"]
    else:
        candidates = ["libx264", "mpeg4"]
    supported = container.supported_codecs
    for name in candidates:
        if name in av.codecs_available and name in supported:
            return name
    raise VideoError(f"no usable video encoder among {candidates} for the {container.format.name!r} format")


def _encoder_options(codec, crf):
    if codec == "libx264":
        # mbtree=0: x264's macroblock-tree rate control gave different bits for the same frames from one encode to
        # the next (PyAV 18.1's x264, core 165, also single-threaded); without it the bits repeat, which resumed
        # and segmented jobs need (docs/video.md, Resume)
        return {"crf": str(crf), "preset": "medium", "x264-params": "mbtree=0"}
    if codec in ("libvpx-vp9", "libvpx"):
        return {"crf": str(max(crf, 4) + 12), "b": "0"}
    return {"flags": "+qscale", "global_quality": str(2 * 118)}  # MPEG-4 Part 2 at q=2


def _audio_copy_works(container_format, template):
    """True when ``template``'s packets can be muxed into ``container_format`` as they are."""
    try:
        trial = av.open(io.BytesIO(), mode="w", format=container_format)
        try:
            trial.add_stream_from_template(template)
            trial.start_encoding()
        finally:
            try:
                trial.close()
            except Exception:
                pass
        return True
    except Exception:
        return False


class _AudioPassThrough:
    """Copies (or, failing that, re-encodes) the first audio stream of ``source`` into ``output``.

    Times are shifted by ``-offset`` seconds (the source time of the first video frame). ``feed(until)`` muxes
    everything before ``until`` seconds of output time, so audio and video interleave as they are written.
    ``keep`` = (start, end) in output seconds (either None: open): only packets that start in [start, end) are
    kept, for a time range of the source (cut at packet boundaries, a few tens of ms; timestamps are kept, so
    the audio stays in sync).
    """

    def __init__(self, source, output, offset, keep=None):
        self.input = av.open(source)
        in_stream = self.input.streams.audio[0]
        self.offset = offset
        self.keep_start, self.keep_end = keep or (None, None)
        self.copy = _audio_copy_works(output.format.name, in_stream)
        if self.copy:
            self.stream = output.add_stream_from_template(in_stream)
        else:
            supported = output.supported_codecs
            codec = next((c for c in ("aac", "libopus", "opus", "mp3", "libmp3lame")
                          if c in supported and c in av.codecs_available), None)
            if codec is None:
                raise VideoError(f"cannot put audio into a {output.format.name!r} file")
            rate = in_stream.codec_context.sample_rate or 48000
            if codec in ("libopus", "opus"):
                rate = 48000
            self.stream = output.add_stream(codec, rate=rate)
            layout = in_stream.codec_context.layout
            self.stream.layout = "stereo" if layout is None or layout.nb_channels > 2 else layout.name
            self.resampler = None
            self.next_pts = None
        self.output = output
        self.packets = self.input.demux(in_stream)
        self.pending = None
        self.done = False

    def _time(self, packet):
        ts = packet.pts if packet.pts is not None else packet.dts
        return None if ts is None else float(ts * packet.time_base) - self.offset

    def feed(self, until=None):
        while not self.done:
            if self.pending is None:
                try:
                    packet = next(self.packets)
                except (StopIteration, av.FFmpegError):
                    self.done = True
                    break
                if packet.size == 0:
                    continue
                self.pending = packet
            time = self._time(self.pending)
            if until is not None and time is not None and time >= until:
                return
            packet, self.pending = self.pending, None
            if time is not None and self.keep_end is not None and time >= self.keep_end:
                self.done = True
                break
            if time is not None and self.keep_start is not None and time < self.keep_start - 1e-6:
                continue
            if self.copy:
                self._copy(packet)
            else:
                self._reencode(packet)
        if until is None and not self.copy:
            self._reencode(None)

    def _copy(self, packet):
        shift = int(round(self.offset / packet.time_base))
        if packet.pts is not None:
            packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        packet.stream = self.stream
        self.output.mux(packet)

    def _reencode(self, packet):
        ctx = self.stream.codec_context
        frames = []
        try:
            frames = packet.decode() if packet is not None else []
        except av.FFmpegError:
            pass
        if self.resampler is None:
            self.resampler = av.AudioResampler(format=ctx.format, layout=ctx.layout, rate=ctx.sample_rate,
                                               frame_size=ctx.frame_size or None)
        out_frames = []
        for frame in frames:
            if self.next_pts is None:
                start = (float(frame.time) if frame.time is not None else 0.0) - self.offset
                self.next_pts = max(0, int(round(start * ctx.sample_rate)))
            frame.pts = None
            out_frames.extend(self.resampler.resample(frame))
        if packet is None:
            out_frames.extend(self.resampler.resample(None))
        for frame in out_frames:
            frame.pts = self.next_pts or 0
            frame.time_base = fractions.Fraction(1, ctx.sample_rate)
            self.next_pts = (self.next_pts or 0) + frame.samples
            self.output.mux(self.stream.encode(frame))
        if packet is None:
            self.output.mux(self.stream.encode(None))

    def close(self):
        self.input.close()


class VideoWriter(_Closable):
    """Encodes RGB frames (H x W x 3, uint8 / uint16 / float) to a video file at ``fps``.

    ``audio_source``: a video whose first audio stream is copied into the output (see the module docstring),
    with ``audio_offset`` the source time (seconds) that becomes time 0 of the output; ``audio_range`` = (start,
    end) output seconds (None: open) keeps only the audio packets starting in that range. ``color_tags``: the
    input's colour tags (``VideoReader.color_tags``) or None for BT.601. ``codec``: force an encoder.
    """

    def __init__(self, path, fps, width, height, audio_source=None, audio_offset=0.0, color_tags=None,
                 codec=None, crf=DEFAULT_CRF, audio_range=None):
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        if av is None:
            raise VideoError(f"cannot write video {self.path}: PyAV is not installed (pip install av)")
        try:
            self.container = av.open(self.path, mode="w")
        except (av.FFmpegError, ValueError) as error:
            raise VideoError(f"cannot write video {self.path}: {error}") from None
        try:
            self.fps = fractions.Fraction(fps).limit_denominator(1001000)
            name = _pick_video_codec(self.container, codec)
            self.stream = self.container.add_stream(name, rate=self.fps, options=_encoder_options(name, crf))
            self.width, self.height = width, height
            self.stream.width, self.stream.height = width + width % 2, height + height % 2
            self.stream.pix_fmt = "yuv420p"
            ctx = self.stream.codec_context
            tags = dict(colorspace=6, color_primaries=2, color_trc=2)  # BT.601 (smpte170m) matrix
            tags.update({k: v for k, v in (color_tags or {}).items() if v is not None})
            if tags["colorspace"] == 2:  # unspecified in the input: keep it unspecified
                tags.update(color_primaries=2, color_trc=2)
            for key, value in tags.items():
                setattr(ctx, key, value)
            ctx.color_range = 1  # limited ("tv") range, as cv2's I420 conversion produces
            self.codec = name
            self.audio = None
            if audio_source is not None:
                self.audio = _AudioPassThrough(audio_source, self.container, audio_offset, audio_range)
        except BaseException:
            self.container.close()
            raise
        self.frames_written = 0

    def write(self, frame):
        if frame.shape[:2] != (self.height, self.width):
            raise VideoError(f"frame of size {frame.shape[1]}x{frame.shape[0]} written to a "
                             f"{self.width}x{self.height} video")
        video_frame = rgb_to_yuv420p(frame)
        video_frame.pts = self.frames_written
        video_frame.time_base = 1 / self.fps
        if self.audio is not None:
            self.audio.feed(until=float((self.frames_written + 1) / self.fps))
        self.container.mux(self.stream.encode(video_frame))
        self.frames_written += 1

    def close(self):
        if self.container is None:
            return
        try:
            self.container.mux(self.stream.encode(None))
            if self.audio is not None:
                self.audio.feed(None)
        finally:
            if self.audio is not None:
                self.audio.close()
            self.container.close()
            self.container = None


class FrameFolderWriter(_Closable):
    """Writes frames as ``frame_000000.png``, ``frame_000001.png``, ... (8- or 16-bit as given) into a folder,
    which must not hold PNG files yet (so frames of an earlier run never mix with new ones)."""

    def __init__(self, folder, pattern="frame_{:06d}.png"):
        self.path = os.fspath(folder)
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise VideoError(f"output {self.path} exists and is not a folder")
        os.makedirs(self.path, exist_ok=True)
        if list_frame_files(self.path):
            raise VideoError(f"output folder {self.path} already holds PNG files; choose an empty or new folder")
        self.pattern = pattern
        self.frames_written = 0

    def write(self, frame):
        frame = to_rgb(frame)
        if frame.dtype not in (np.uint8, np.uint16):
            frame = to_uint8(frame)
        path = os.path.join(self.path, self.pattern.format(self.frames_written))
        if not cv2.imwrite(path, np.ascontiguousarray(frame[:, :, ::-1])):
            raise VideoError(f"cannot write frame {path}")
        self.frames_written += 1



def open_writer(path, fps, width, height, **video_options):
    """A :class:`FrameFolderWriter` if :func:`is_folder_output`, else a :class:`VideoWriter`."""
    if is_folder_output(path):
        return FrameFolderWriter(path)
    return VideoWriter(path, fps, width, height, **video_options)


# ---------------------------------------------------------------------------------------------- scene cuts

def grey_thumbnail(frame, size=THUMBNAIL_SIZE):
    """RGB frame (any dtype) -> float32 grey thumbnail in [0, 1] whose long side is ``size`` (area average)."""
    grey = cv2.cvtColor(to_float(to_rgb(frame)), cv2.COLOR_RGB2GRAY)
    height, width = grey.shape
    scale = size / max(height, width)
    if scale >= 1:
        return grey
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(grey, target, interpolation=cv2.INTER_AREA)


def scene_cut_score(frame0, frame1, size=THUMBNAIL_SIZE):
    """Mean absolute difference in [0, 1] of the grey thumbnails of two frames (or of two thumbnails)."""
    a = frame0 if frame0.ndim == 2 and max(frame0.shape) <= size else grey_thumbnail(frame0, size)
    b = frame1 if frame1.ndim == 2 and max(frame1.shape) <= size else grey_thumbnail(frame1, size)
    return float(np.abs(a - b).mean())


class SceneCutDetector:
    """Streaming detector: ``push(frame)`` returns True when ``frame`` starts a new shot (its score against
    the previous frame exceeds ``threshold``). A threshold <= 0 disables detection. Keeps one thumbnail."""

    def __init__(self, threshold=DEFAULT_SCENE_THRESHOLD, size=THUMBNAIL_SIZE):
        self.threshold = threshold
        self.size = size
        self.previous = None
        self.last_score = None

    @property
    def enabled(self):
        return self.threshold is not None and self.threshold > 0

    def push(self, frame):
        if not self.enabled:
            return False
        thumbnail = grey_thumbnail(frame, self.size)
        previous, self.previous = self.previous, thumbnail
        if previous is None:
            self.last_score = None
            return False
        self.last_score = float(np.abs(thumbnail - previous).mean())
        return self.last_score > self.threshold


def find_scene_cuts(frames, threshold=DEFAULT_SCENE_THRESHOLD):
    """Indices i such that a cut lies between frames i and i+1 of the iterable ``frames``."""
    detector = SceneCutDetector(threshold)
    return [index - 1 for index, frame in enumerate(frames) if detector.push(frame)]


# ---------------------------------------------------------------------------------------------- duplicates

DUPLICATE_THUMBNAIL_SIZE = 64
"""Long side, in pixels, of the grey thumbnails compared by :func:`duplicate_score`."""

DEFAULT_DUPLICATE_THRESHOLD = 0.02
"""Pairs with a :func:`duplicate_score` below this are duplicates. Measured on the shared clips: with every frame
written twice and re-encoded (libx264), duplicate pairs score at most 0.007 (bikes), 0.010 (caminandes_title),
0.015 (ball_classroom) up to CRF 28, and up to 0.038 at CRF 18 on the small, noisy carphone (90% below 0.02);
the repeated frames of talking_head_vga.mp4 (25 fps content in 29.97, one frame in six is doubled) score 0.002.
Pairs of distinct frames of bikes, carphone, tree, caminandes_title and ball_classroom score 0.022 or more;
the ones below 0.02 in other clips come from still shots (lego_mechanism before it moves, a talking head that
holds still: at most 0.02 on any 16-pixel block at full size)."""


def duplicate_score(frame0, frame1, size=DUPLICATE_THUMBNAIL_SIZE):
    """The largest absolute difference, in [0, 1], between the cells of the grey thumbnails (long side ``size``,
    area-averaged) of two frames. Unlike the mean (:func:`scene_cut_score`) it sees a small object moving over a
    still background (a pen, a mouth, a cursor), while coding noise averages out within each cell."""
    a = frame0 if frame0.ndim == 2 and max(frame0.shape) <= size else grey_thumbnail(frame0, size)
    b = frame1 if frame1.ndim == 2 and max(frame1.shape) <= size else grey_thumbnail(frame1, size)
    return float(np.abs(a - b).max())
