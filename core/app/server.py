"""The web app's server: uploads, limits, the two-frame view, clip jobs, and the HTTP routes.

    app = App(interpolator, limits=Limits(max_upload_mb=100), device_name="cpu")
    server = make_server(app, "127.0.0.1", 7860)     # a ThreadingHTTPServer; server.serve_forever()
    ...
    server.shutdown(); server.server_close(); app.close()   # removes the temporary folder

Everything the app writes (uploads, results) lies in one temporary folder (``app.workdir``), removed by
``close()``. Work on the model goes through one :class:`core.app.jobs.DeviceQueue` (one job at a time). Routes,
all answering JSON ``{"error": "<one line>"}`` with a 4xx status on bad input:

    GET  /                          the page
    GET  /api/config                limits and model
    POST /api/upload?kind=image|clip&name=N     body: the raw file -> {"id", "width", "height", ...}
    POST /api/interpolate           {"frame0": id, "frame1": id, "gt": id|null, "t": float}
                                    -> {"frame", "flow01", "flow10", "diff" (PNG data URLs), "psnr" (dB or null)}
    POST /api/clip                  {"clip": id, "multi": 2|4} or {"clip": id, "fps": "60000/1001"} -> {"job": id}
    GET  /api/job/<id>              {"state", "position", "done", "total", "error", "result", "montage", ...}
    GET  /files/<job>/<name>        a finished job's video (a download)
"""
import atexit
import base64
import collections
import fractions
import http.server
import json
import math
import os
import re
import shutil
import socketserver
import sys
import tempfile
import threading
import urllib.parse
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..cli import error_message, known_errors
from ..flow_viz import flow_to_color
from ..frames import FrameError, image_to_tensor, read_image
from ..metrics import psnr
from ..video import VideoError, open_reader
from .clips import engine_converter, write_montage
from .jobs import DONE, DeviceQueue
from .page import PAGE

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CLIP_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".ogg", ".ogv", ".mpg", ".mpeg", ".gif",
                   ".ts", ".flv", ".wmv", ".y4m", ".3gp")
DIFF_GAIN = 4
"""The difference image shows |frame - ground truth| x DIFF_GAIN (clipped to 255)."""
DRAIN_BYTES = 1 << 30
"""An upload over the limit by at most this much is read and dropped before the answer (a client that sends its
whole body first, as most do, then gets the message); a larger one is answered at once and the connection closed."""
MAX_RATE_RATIO = 16
"""A target rate may be at most this many times the clip's rate."""


class AppError(ValueError):
    """Bad input to the app: shown on the page as one line (HTTP 4xx)."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


@dataclass
class Limits:
    """What the app accepts. Sizes in MB (10^6 bytes), pixels as width x height of one frame."""
    max_upload_mb: float = 100.0     # one uploaded file
    max_pixels: int = 1920 * 1088    # width x height of a frame or a clip
    max_frames: int = 300            # frames of an uploaded clip
    max_uploads: int = 32            # uploads kept; the oldest are deleted beyond it
    max_jobs: int = 8                # clip jobs waiting or kept with their results; the oldest finished go first

    @property
    def max_upload_bytes(self):
        return int(self.max_upload_mb * 1_000_000)


@dataclass
class Upload:
    id: str
    kind: str          # "image" or "clip"
    name: str          # the browser's file name (shown only)
    path: str
    width: int
    height: int
    frames: int = 0            # clips
    fps: str = ""              # clips: the rate as a fraction string
    image: np.ndarray = None   # images: H x W x 3 RGB (uint8 or uint16)

    def info(self):
        info = {"id": self.id, "kind": self.kind, "name": self.name, "width": self.width, "height": self.height}
        if self.kind == "clip":
            info.update(frames=self.frames, fps=self.fps, fps_value=float(fractions.Fraction(self.fps)))
        return info


def png_data_url(image):
    """H x W x 3 RGB uint8 array -> 'data:image/png;base64,...' (lossless)."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def flow_pictures(bi_flow):
    """1 x 4 x H x W flow (pixels) -> (frame0->frame1, frame1->frame0) colour pictures on one shared scale."""
    flow = bi_flow[0].float().cpu()
    both = torch.cat([flow[0:2], flow[2:4]], dim=2)          # 2 x H x 2W: one scale for both directions
    colour = flow_to_color(both)
    width = flow.shape[-1]
    return colour[:, :width], colour[:, width:]


def count_video_frames(path):
    """Frames of the first video stream of ``path``, counted from its packets (no decoding)."""
    import av
    with av.open(path) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


def parse_rate(text):
    """'60', '59.94' or '60000/1001' -> a positive Fraction (AppError otherwise)."""
    try:
        rate = fractions.Fraction(str(text).strip()).limit_denominator(1001000)
    except (ValueError, ZeroDivisionError):
        raise AppError(f"not a frame rate: {text!r} (e.g. 60, 59.94 or 60000/1001)") from None
    if rate <= 0:
        raise AppError(f"a frame rate must be positive, got {text}")
    return rate


class App:
    """The app's state: the model, the device queue, uploads and jobs, all files in one temporary folder.

    interpolator: a loaded :class:`core.Interpolator` (loaded once, shared by all requests).
    convert_clip(source, output, rate, interpolator, progress) -> dict: converts a clip to ``output`` (H.264
        .mp4) at ``rate`` (("multi", m) or ("fps", Fraction)) calling ``progress(done, total)``; returns at least
        {"frames_in", "frames_out", "fps_out"} (default: core.engine.convert_video, :mod:`core.app.clips`).
    workdir: the folder to create the temporary folder in (default: the system's).
    progress_bars: show a tqdm bar on stderr while a clip converts.
    """

    def __init__(self, interpolator, limits=None, device_name=None, convert_clip=None, model_label="",
                 workdir=None, progress_bars=True):
        self.interpolator = interpolator
        self.limits = limits or Limits()
        self.device_name = device_name or str(getattr(interpolator, "device", "cpu"))
        self.model_label = model_label
        self.progress_bars = progress_bars
        self.convert_clip = convert_clip or engine_converter
        self.workdir = tempfile.mkdtemp(prefix="upr-app-", dir=workdir)
        self.uploads = collections.OrderedDict()
        self.jobs = collections.OrderedDict()
        self._lock = threading.Lock()
        self._counter = 0
        self._errors = known_errors((AppError,))
        self.queue = DeviceQueue(self.device_name, self.describe_error)
        self.closed = False
        atexit.register(self.close)   # also where a script forgets close()

    # ------------------------------------------------------------------------------------------ helpers

    def describe_error(self, error):
        """One line for a known error, None for an unexpected one (a bug)."""
        if isinstance(error, self._errors):
            return error_message(error).replace(self.workdir + os.sep, "")
        return None

    def _new_id(self, prefix):
        with self._lock:
            self._counter += 1
            return f"{prefix}{self._counter}-{os.urandom(4).hex()}"

    def config(self):
        return {"limits": asdict(self.limits), "device": self.device_name, "model": self.model_label,
                "queue": len(self.queue)}

    def close(self):
        """Stop the worker and remove the temporary folder."""
        if self.closed:
            return
        self.closed = True
        self.queue.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------ uploads

    def add_upload(self, kind, name, read_body, length):
        """Store an uploaded file (``read_body(n)`` reads its ``length`` bytes) and check it; -> Upload.info()."""
        if kind not in ("image", "clip"):
            raise AppError(f"unknown upload kind {kind!r}")
        name = os.path.basename(name or kind)[:120] or kind
        limit = self.limits.max_upload_bytes
        if length > limit:
            raise AppError(f"{name}: {length / 1e6:.4g} MB is larger than the limit of {limit / 1e6:g} MB", 413)
        if length <= 0:
            raise AppError(f"{name}: the file is empty")
        ext = os.path.splitext(name)[1].lower()
        allowed = IMAGE_EXTENSIONS if kind == "image" else CLIP_EXTENSIONS
        if ext not in allowed:
            ext = ".png" if kind == "image" else ".mp4"   # the content decides; the name only picks a suffix
        upload_id = self._new_id("u")
        path = os.path.join(self.workdir, upload_id + ext)
        remaining = length
        with open(path, "wb") as f:
            while remaining:
                chunk = read_body(min(remaining, 1 << 20))
                if not chunk:
                    break
                f.write(chunk)
                remaining -= len(chunk)
        try:
            if remaining:
                raise AppError(f"{name}: the upload was cut short")
            upload = self._check_image(upload_id, name, path) if kind == "image" else \
                self._check_clip(upload_id, name, path)
        except BaseException:
            os.remove(path)
            raise
        with self._lock:
            self.uploads[upload_id] = upload
            while len(self.uploads) > self.limits.max_uploads:
                _, old = self.uploads.popitem(last=False)
                _remove(old.path)
        return upload.info()

    def _check_size(self, name, width, height):
        if width * height > self.limits.max_pixels:
            raise AppError(f"{name}: {width}x{height} is larger than the limit of {self.limits.max_pixels:,} "
                           "pixels per frame")

    def _check_image(self, upload_id, name, path):
        try:
            image = read_image(path)
        except FrameError:
            raise AppError(f"{name}: not an image this app can read (PNG, JPEG, BMP, TIFF, WebP), or corrupt") \
                from None
        height, width = image.shape[:2]
        self._check_size(name, width, height)
        return Upload(upload_id, "image", name, path, width, height, image=image)

    def _check_clip(self, upload_id, name, path):
        try:
            with open_reader(path) as reader:
                width, height, fps = reader.width, reader.height, reader.fps
                first = next(iter(reader))     # decodes one frame: a corrupt stream fails here
            frames = count_video_frames(path)
        except (VideoError, StopIteration, *known_errors()) as error:
            detail = error_message(error).replace(path, name) if not isinstance(error, StopIteration) else \
                "no frames"
            raise AppError(f"{name}: not a video this app can read ({detail})") from None
        if first is None or not width or not height:
            raise AppError(f"{name}: not a video this app can read")
        self._check_size(name, width, height)
        if frames > self.limits.max_frames:
            raise AppError(f"{name}: {frames} frames is more than the limit of {self.limits.max_frames}")
        if frames < 2:
            raise AppError(f"{name}: a clip needs at least two frames, this one has {frames}")
        return Upload(upload_id, "clip", name, path, width, height, frames=frames, fps=str(fps))

    def get_upload(self, upload_id, kind, role):
        with self._lock:
            upload = self.uploads.get(upload_id) if isinstance(upload_id, str) else None
        if upload is None or upload.kind != kind:
            raise AppError(f"{role}: no such upload (drop the file again)")
        return upload

    # ------------------------------------------------------------------------------------------ two frames

    def interpolate(self, request):
        """The two-frame view for ``request`` = {"frame0", "frame1", "gt" (optional), "t"}: runs on the queue."""
        frame0 = self.get_upload(request.get("frame0"), "image", "frame 0")
        frame1 = self.get_upload(request.get("frame1"), "image", "frame 1")
        gt = self.get_upload(request["gt"], "image", "ground truth") if request.get("gt") else None
        try:
            t = float(request.get("t", 0.5))
        except (TypeError, ValueError):
            raise AppError(f"t must be a number in [0, 1], got {request.get('t')!r}") from None
        if not 0.0 <= t <= 1.0:
            raise AppError(f"t must lie in [0, 1], got {t:g}")
        if frame0.image.shape != frame1.image.shape:
            raise AppError(f"the frames differ in size: {frame0.width}x{frame0.height} and "
                           f"{frame1.width}x{frame1.height}")
        if gt is not None and gt.image.shape[:2] != frame0.image.shape[:2]:
            raise AppError(f"the ground truth is {gt.width}x{gt.height}, the frames {frame0.width}x{frame0.height}")

        def work(job):
            image0, image1 = frame0.image, frame1.image
            result, bi_flow = self.interpolator.interpolate(image0, image1, t, return_flow=True)
            return result, bi_flow

        result, bi_flow = self.queue.submit(work, "frames").wait()
        result = _to_uint8(result)
        flow01, flow10 = flow_pictures(bi_flow)
        answer = {"t": t, "frame": png_data_url(result), "flow01": png_data_url(flow01),
                  "flow10": png_data_url(flow10), "diff": None, "psnr": None,
                  "width": frame0.width, "height": frame0.height}
        if gt is not None:
            target = _to_uint8(gt.image)
            diff = np.abs(result.astype(np.int16) - target.astype(np.int16))
            answer["diff"] = png_data_url(np.clip(diff * DIFF_GAIN, 0, 255).astype(np.uint8))
            answer["psnr"] = round(float(psnr(image_to_tensor(result), image_to_tensor(target))[0]), 3)
        return answer

    # ------------------------------------------------------------------------------------------ clips

    def submit_clip(self, request):
        """Queue a clip conversion for ``request`` = {"clip": id, "multi": m} or {"clip": id, "fps": rate}."""
        clip = self.get_upload(request.get("clip"), "clip", "clip")
        in_fps = fractions.Fraction(clip.fps)
        if request.get("fps") not in (None, ""):
            out_fps = parse_rate(request["fps"])
            rate = ("fps", out_fps)
        else:
            try:
                multi = int(request.get("multi", 2))
            except (TypeError, ValueError):
                raise AppError(f"multi must be a whole number, got {request.get('multi')!r}") from None
            if multi < 2:
                raise AppError(f"multi must be at least 2, got {multi}")
            out_fps = in_fps * multi
            rate = ("multi", multi)
        if out_fps / in_fps > MAX_RATE_RATIO:
            raise AppError(f"{_rate_text(out_fps)} fps is more than {MAX_RATE_RATIO} x the clip's "
                           f"{_rate_text(in_fps)} fps")
        with self._lock:
            waiting = [job for job, _ in self.jobs.values() if job.state not in (DONE, "error")]
            if len(waiting) >= self.limits.max_jobs:
                raise AppError(f"{len(waiting)} clips are waiting already; try again when one has finished", 429)
        folder = os.path.join(self.workdir, self._new_id("j"))
        os.makedirs(folder)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(clip.name)[0]).strip("._") or "clip"
        suffix = f"x{rate[1]}" if rate[0] == "multi" else f"{float(out_fps):g}fps"
        names = {"result": f"{stem}_{suffix}.mp4", "montage": f"{stem}_{suffix}_montage.mp4"}

        def work(job):
            expected = math.floor(clip.frames * out_fps / in_fps + fractions.Fraction(1, 2))   # output frames
            job.report(0, expected)
            output = os.path.join(folder, names["result"])
            with tqdm(total=expected, unit="frame", desc=f"{job.id} {clip.name}", file=sys.stderr,
                      disable=not self.progress_bars, dynamic_ncols=True, leave=False) as bar:
                def progress(done, total):
                    job.report(done, total or expected)
                    bar.total = total or expected
                    bar.update(done - bar.n)

                summary = self.convert_clip(clip.path, output, rate, self.interpolator, progress)
            job.stage = "montage"
            write_montage(clip.path, output, os.path.join(folder, names["montage"]))
            job.stage = "done"
            return summary

        job = self.queue.submit(work, "clip")
        job.stage = "interpolating"
        with self._lock:
            self.jobs[job.id] = (job, {"folder": folder, "names": names, "clip": clip.name,
                                       "fps_in": _rate_text(in_fps), "fps_out": _rate_text(out_fps)})
            finished = [key for key, (old, _) in self.jobs.items() if old.state in (DONE, "error")]
            while len(self.jobs) > self.limits.max_jobs and finished:
                _, meta = self.jobs.pop(finished.pop(0))
                shutil.rmtree(meta["folder"], ignore_errors=True)
        return {"job": job.id}

    def job_status(self, job_id):
        with self._lock:
            entry = self.jobs.get(job_id)
        if entry is None:
            raise AppError(f"no such job: {job_id}", 404)
        job, meta = entry
        status = job.status()
        status.update(stage=getattr(job, "stage", ""), clip=meta["clip"], fps_in=meta["fps_in"],
                      fps_out=meta["fps_out"])
        if job.state == DONE:
            summary = job.result or {}
            status.update(result=f"/files/{job.id}/{meta['names']['result']}",
                          montage=f"/files/{job.id}/{meta['names']['montage']}",
                          frames_in=summary.get("frames_in"), frames_out=summary.get("frames_out"))
        return status

    def job_file(self, job_id, name):
        """The path of a finished job's file (AppError 404 otherwise)."""
        with self._lock:
            entry = self.jobs.get(job_id)
        if entry is None or entry[0].state != DONE or name not in entry[1]["names"].values():
            raise AppError("no such file", 404)
        return os.path.join(entry[1]["folder"], name)


def _rate_text(rate):
    text = f"{float(rate):.3f}".rstrip("0").rstrip(".")
    return text


def _to_uint8(image):
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.float32) / 257.0).round()).astype(np.uint8)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------- HTTP

class Handler(http.server.BaseHTTPRequestHandler):
    """Routes requests to ``self.server.app`` (see the module docstring)."""

    server_version = "upr-app"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):   # noqa: A002 - quiet: errors are logged by the app
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status, body, content_type, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status, payload, headers=None):
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _error(self, status, message, close=False):
        headers = {"Connection": "close"} if close else None
        if close:
            self.close_connection = True
        self._json(status, {"error": message}, headers)

    def _read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > 1_000_000:
            raise AppError("request too large", 413)
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise AppError("the request is not JSON") from None
        if not isinstance(payload, dict):
            raise AppError("the request must be a JSON object")
        return payload

    def _dispatch(self, routes):
        app = self.server.app
        parsed = urllib.parse.urlsplit(self.path)
        for prefix, handler in routes:
            if parsed.path == prefix or (len(prefix) > 1 and prefix.endswith("/") and parsed.path.startswith(prefix)):
                try:
                    handler(app, parsed)
                except AppError as error:
                    self._error(error.status, str(error), close=error.status == 413)
                except Exception as error:   # noqa: BLE001 - never a traceback on the page
                    message = app.describe_error(error)
                    if message is None:
                        import traceback
                        traceback.print_exception(error, file=sys.stderr)
                        message = f"internal error ({type(error).__name__}); the server log has the details"
                        self._error(500, message)
                    else:
                        self._error(400, message)
                return
        self._error(404, f"not found: {parsed.path}")

    def do_GET(self):
        self._dispatch([("/", self._page), ("/index.html", self._page), ("/api/config", self._config),
                        ("/api/job/", self._job), ("/files/", self._file)])

    do_HEAD = do_GET

    def do_POST(self):
        self._dispatch([("/api/upload", self._upload), ("/api/interpolate", self._interpolate),
                        ("/api/clip", self._clip)])

    def _page(self, app, parsed):
        self._send(200, PAGE.encode("utf-8"), "text/html; charset=utf-8")

    def _config(self, app, parsed):
        self._json(200, app.config())

    def _upload(self, app, parsed):
        query = urllib.parse.parse_qs(parsed.query)
        try:
            length = int(self.headers.get("Content-Length"))
        except (TypeError, ValueError):
            raise AppError("the upload has no Content-Length", 411) from None
        limit = app.limits.max_upload_bytes
        if limit < length <= limit + DRAIN_BYTES:
            self._discard(length)   # read what the client sends anyway, so that it gets the answer (413 below)
        self._json(200, app.add_upload(query.get("kind", [""])[0], query.get("name", [""])[0], self.rfile.read,
                                       length))

    def _discard(self, length):
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)

    def _interpolate(self, app, parsed):
        self._json(200, app.interpolate(self._read_json()))

    def _clip(self, app, parsed):
        self._json(200, app.submit_clip(self._read_json()))

    def _job(self, app, parsed):
        self._json(200, app.job_status(parsed.path[len("/api/job/"):]))

    def _file(self, app, parsed):
        parts = parsed.path[len("/files/"):].split("/")
        if len(parts) != 2:
            raise AppError("no such file", 404)
        path = app.job_file(*parts)
        size = os.path.getsize(path)
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size))
        self.send_header("Content-Disposition", f'attachment; filename="{parts[1]}"')
        self.end_headers()
        if self.command != "HEAD":
            with open(path, "rb") as f:
                shutil.copyfileobj(f, self.wfile)


class AppServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """An HTTP server for one :class:`App` (a thread per request; the model work is serialised by the app)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app, host, port, verbose=False):
        self.app = app
        self.verbose = verbose
        super().__init__((host, port), Handler)

    @property
    def url(self):
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def make_server(app, host="127.0.0.1", port=7860, verbose=False):
    """Bind ``app`` to host:port (port 0: a free one); -> :class:`AppServer` (call serve_forever())."""
    return AppServer(app, host, port, verbose)


def serve_in_thread(app, host="127.0.0.1", port=0):
    """Start a server on a daemon thread; -> (server, thread). Stop with server.shutdown(); server.server_close()."""
    server = make_server(app, host, port)
    thread = threading.Thread(target=server.serve_forever, name="upr-app-http", daemon=True)
    thread.start()
    return server, thread

