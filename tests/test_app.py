"""The local web app (core.app, tools.app): the queue, the HTTP routes, limits, the bind address, and the page in
a real browser (Debian's headless Chromium driven by Playwright).

The browser tests skip where /usr/bin/chromium or Playwright is missing (.ci/setup_browser.sh installs both),
unless UPR_REQUIRE_FRONTS=1, where they fail instead (CI).
"""
import base64
import errno
import fractions
import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import cv2
import numpy as np
import pytest

from core.app import App, AppError, DeviceQueue, Limits, serve_in_thread
from core.frames import read_image
from core.video import open_reader, open_writer
from conftest import fixture_path, missing_front

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(REPO, "demo", "images")
FRAME0, FRAME1, GT = (os.path.join(IMAGES, f"carphone_{i}.png") for i in (0, 2, 1))
CARPHONE_CLIP = fixture_path(os.path.join("app", "carphone_000-005.mp4"))
CHROMIUM = "/usr/bin/chromium"
CLIP_FRAMES = 6
UPLOAD_LIMIT_MB = 1.0


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def interpolator():
    from core import Interpolator
    return Interpolator.from_checkpoint(device="cpu")


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """The first CLIP_FRAMES frames of the real carphone clip (176x144, 29.97 fps) as an H.264 .mp4
    (tests/fixtures/app), copied under the name the downloads are checked against."""
    path = str(tmp_path_factory.mktemp("clip") / "carphone_short.mp4")
    shutil.copyfile(CARPHONE_CLIP, path)
    return path


@pytest.fixture(scope="module")
def served(interpolator):
    """An App with small limits, served on a free loopback port: (app, server)."""
    app = App(interpolator, Limits(max_upload_mb=UPLOAD_LIMIT_MB, max_pixels=320 * 240, max_frames=50),
              model_label="base", progress_bars=False)
    server, thread = serve_in_thread(app, "127.0.0.1", 0)
    yield app, server
    server.shutdown()
    server.server_close()
    app.close()
    thread.join(5)


def request(server, path, data=None, content_type="application/octet-stream", method=None):
    """-> (status, parsed JSON or raw bytes)."""
    req = urllib.request.Request(server.url + path.lstrip("/"), data=data, method=method or
                                 ("POST" if data is not None else "GET"), headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            status, body, kind = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        status, body, kind = error.code, error.read(), error.headers.get("Content-Type", "")
    return status, (json.loads(body) if kind.startswith("application/json") else body)


def upload(server, path, kind="image", name=None, data=None):
    data = open(path, "rb").read() if data is None else data
    name = name or os.path.basename(path)
    return request(server, f"/api/upload?kind={kind}&name={urllib.parse.quote(name)}", data)


def decode_data_url(url):
    """'data:image/png;base64,...' -> H x W x 3 RGB uint8."""
    assert url.startswith("data:image/png;base64,")
    raw = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2.imdecode(raw, cv2.IMREAD_COLOR)[:, :, ::-1]


def count_frames(path):
    with open_reader(path) as reader:
        return sum(1 for _ in reader), reader.width, reader.height, reader.fps


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


# ---------------------------------------------------------------------------------------------- the queue

def test_queue_runs_one_job_at_a_time_in_order():
    queue = DeviceQueue("test")
    running, most, order = [0], [0], []
    lock = threading.Lock()
    gate = threading.Event()

    def work(number):
        def run(job):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            if number == 0:
                gate.wait(10)            # hold the first job so that the others queue behind it
            time.sleep(0.01)
            order.append(number)
            job.report(number, 5)
            with lock:
                running[0] -= 1
            return number * 10
        return run

    jobs = [queue.submit(work(i), "w") for i in range(5)]
    time.sleep(0.1)
    assert jobs[0].state == "running" and jobs[0].position == 0
    assert [job.position for job in jobs[1:]] == [1, 2, 3, 4]
    assert [job.state for job in jobs[1:]] == ["queued"] * 4
    gate.set()
    assert [job.wait(10) for job in jobs] == [0, 10, 20, 30, 40]
    assert order == [0, 1, 2, 3, 4] and most[0] == 1
    assert jobs[3].done == 3 and jobs[3].total == 5
    queue.close()


def test_queue_failure_is_a_message_and_the_worker_goes_on(capsys):
    queue = DeviceQueue("test", describe_error=lambda e: str(e) if isinstance(e, ValueError) else None)
    bad = queue.submit(lambda job: (_ for _ in ()).throw(ValueError("bad frame")), "x")
    bug = queue.submit(lambda job: 1 / 0, "x")
    good = queue.submit(lambda job: "fine", "x")
    assert good.wait(10) == "fine"
    with pytest.raises(ValueError):
        bad.wait(1)
    assert bad.state == "error" and bad.error == "bad frame"
    assert bug.state == "error" and bug.error.startswith("internal error (ZeroDivisionError)")
    assert "ZeroDivisionError" in capsys.readouterr().err      # the traceback goes to the server log only
    queue.close()


# ---------------------------------------------------------------------------------------------- HTTP routes

def test_two_frames_equal_the_interpolator(served, interpolator):
    app, server = served
    ids = [upload(server, path)[1]["id"] for path in (FRAME0, FRAME1, GT)]
    frame0, frame1, gt = (read_image(path) for path in (FRAME0, FRAME1, GT))
    for t in (0.25, 0.5):
        status, answer = request(server, "/api/interpolate", json.dumps(
            {"frame0": ids[0], "frame1": ids[1], "gt": ids[2], "t": t}).encode(), "application/json")
        assert status == 200, answer
        shown = decode_data_url(answer["frame"])
        expected, bi_flow = interpolator.interpolate(frame0, frame1, t, return_flow=True)
        np.testing.assert_array_equal(shown, expected)
        mse = np.mean((expected.astype(np.float64) - gt.astype(np.float64)) ** 2) / 255.0 ** 2
        assert answer["psnr"] == pytest.approx(-10 * np.log10(mse), abs=1e-3)
        diff = decode_data_url(answer["diff"])
        np.testing.assert_array_equal(diff, np.minimum(np.abs(expected.astype(int) - gt.astype(int)) * 4, 255))
        for name in ("flow01", "flow10"):
            assert decode_data_url(answer[name]).shape == frame0.shape
    # the two flows share one colour scale: the flow with the largest magnitude reaches full saturation
    flow01, flow10 = decode_data_url(answer["flow01"]), decode_data_url(answer["flow10"])
    assert not np.array_equal(flow01, flow10)
    # the shipped model on carphone at t = 0.5: the README's 28.93 dB
    assert answer["psnr"] == pytest.approx(28.93, abs=0.01)


def test_bad_requests_are_one_line_messages(served):
    app, server = served
    messages = []

    def refused(status, answer, expected_status, expected):
        assert status == expected_status and expected in answer["error"], answer
        messages.append(answer["error"])

    ids = [upload(server, path)[1]["id"] for path in (FRAME0, os.path.join(IMAGES, "tree_0.png"))]
    for body, expected in (({"frame0": ids[0], "frame1": ids[1]}, "the frames differ in size: 176x144 and 320x240"),
                           ({"frame0": ids[0], "frame1": ids[0], "gt": ids[1]},
                            "the ground truth is 320x240, the frames 176x144"),
                           ({"frame0": ids[0], "frame1": ids[0], "t": 1.5}, "t must lie in [0, 1], got 1.5"),
                           ({"frame0": ids[0], "frame1": ids[0], "t": "soon"}, "t must be a number"),
                           ({"frame0": "nope", "frame1": ids[0]}, "frame 0: no such upload")):
        refused(*request(server, "/api/interpolate", json.dumps(body).encode(), "application/json"), 400, expected)
    before = files_under(app.workdir)
    refused(*upload(server, FRAME0, name="broken.png", data=b"\x89PNG\r\n\x1a\n" + os.urandom(500)), 400,
            "broken.png: not an image")
    refused(*upload(server, FRAME0, kind="clip", name="broken.mp4", data=os.urandom(4000)), 400,
            "broken.mp4: not a video")
    refused(*upload(server, FRAME0, name="big.png", data=b"\0" * (int(UPLOAD_LIMIT_MB * 1e6) + 1000)), 413,
            "big.png: 1.001 MB is larger than the limit of 1 MB")
    refused(*upload(server, FRAME0, name="empty.png", data=b""), 400, "empty.png: the file is empty")
    refused(*request(server, "/api/interpolate", b"{not json", "application/json"), 400, "the request is not JSON")
    refused(*request(server, "/api/clip", json.dumps({"clip": ids[0]}).encode(), "application/json"), 400,
            "clip: no such upload")
    refused(*request(server, "/api/job/clip-999"), 404, "no such job")
    refused(*request(server, "/api/nothing"), 404, "not found: /api/nothing")
    assert files_under(app.workdir) == before          # nothing of the refused uploads stays
    assert all("\n" not in m and "Traceback" not in m and app.workdir not in m for m in messages)
    status, page = request(server, "/")                 # the server still answers
    assert status == 200 and b"UPR-Net" in page


def test_limits_on_resolution_and_frames(interpolator, short_clip, tmp_path):
    app = App(interpolator, Limits(max_pixels=100 * 100, max_frames=CLIP_FRAMES - 1), convert_clip=lambda *a: {})
    try:
        with pytest.raises(AppError, match=r"176x144 is larger than the limit of 10,000 pixels"):
            app.add_upload("image", "carphone_0.png", open(FRAME0, "rb").read, os.path.getsize(FRAME0))
        app.limits.max_pixels = 176 * 144
        with pytest.raises(AppError, match=rf"{CLIP_FRAMES} frames is more than the limit of {CLIP_FRAMES - 1}"):
            app.add_upload("clip", "short.mp4", open(short_clip, "rb").read, os.path.getsize(short_clip))
        assert files_under(app.workdir) == []
        app.limits.max_frames = CLIP_FRAMES
        info = app.add_upload("clip", "short.mp4", open(short_clip, "rb").read, os.path.getsize(short_clip))
        assert info["frames"] == CLIP_FRAMES and (info["width"], info["height"]) == (176, 144)
        with pytest.raises(AppError, match="more than 16 x"):
            app.submit_clip({"clip": info["id"], "fps": "1000"})
        with pytest.raises(AppError, match="not a frame rate"):
            app.submit_clip({"clip": info["id"], "fps": "fast"})
        with pytest.raises(AppError, match="at least 2"):
            app.submit_clip({"clip": info["id"], "multi": 1})
        workdir = app.workdir
        assert os.path.isdir(workdir) and len(files_under(workdir)) == 1
    finally:
        app.close()
    assert not os.path.exists(workdir)                  # the temporary folder goes with the app


def test_clip_job_over_http(served, short_clip):
    app, server = served
    status, info = upload(server, short_clip, kind="clip", name="carphone é court.mp4")
    assert status == 200 and info["frames"] == CLIP_FRAMES and info["name"] == "carphone é court.mp4"
    status, answer = request(server, "/api/clip", json.dumps({"clip": info["id"], "multi": 2}).encode(),
                             "application/json")
    assert status == 200, answer
    status, second = request(server, "/api/clip", json.dumps({"clip": info["id"], "fps": "50"}).encode(),
                             "application/json")
    assert status == 200, second
    status, queued = request(server, f"/api/job/{second['job']}")
    assert queued["state"] in ("queued", "running", "done")
    if queued["state"] == "queued":                      # behind the first job: one job at a time
        assert queued["position"] == 1
    job = wait_for_job(server, answer["job"])
    assert job["state"] == "done" and job["frames_out"] == 2 * CLIP_FRAMES
    assert job["result"] == f"/files/{answer['job']}/carphone_court_x2.mp4"      # a safe name for the download
    status, video = request(server, job["result"])
    assert status == 200 and len(video) > 1000
    result_path = os.path.join(app.workdir, "check.mp4")
    with open(result_path, "wb") as f:
        f.write(video)
    frames, width, height, fps = count_frames(result_path)
    os.remove(result_path)
    assert (frames, width, height) == (2 * CLIP_FRAMES, 176, 144)
    assert fps == 2 * fractions.Fraction(30000, 1001)
    status, montage = request(server, job["montage"])
    montage_path = os.path.join(app.workdir, "check_montage.mp4")
    with open(montage_path, "wb") as f:
        f.write(montage)
    frames, width, height, _ = count_frames(montage_path)
    os.remove(montage_path)
    assert (frames, width, height) == (2 * CLIP_FRAMES, 352, 144)
    status, answer = request(server, f"/files/{answer['job']}/../../etc/passwd")
    assert status == 404
    job = wait_for_job(server, second["job"])
    # 6 frames at 30000/1001 fps -> 50 fps: round(6 x 50 x 1.001 / 30) = 10 frames (docs/video.md, Timing)
    assert job["frames_out"] == 10 and job["fps_out"] == "50" and job["result"].endswith("carphone_court_50fps.mp4")
    status, video = request(server, job["result"])
    result_path = os.path.join(app.workdir, "check50.mp4")
    with open(result_path, "wb") as f:
        f.write(video)
    frames, _, _, fps = count_frames(result_path)
    os.remove(result_path)
    assert (frames, fps) == (10, 50)


def wait_for_job(server, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        status, job = request(server, f"/api/job/{job_id}")
        assert status == 200 and job["state"] in ("queued", "running", "done"), job
        if job["state"] == "done" or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_montage_holds_the_input_frame(tmp_path, short_clip):
    """write_montage: output frame j shows input frame floor(j * r_in / r_out) on the left, the result on the
    right (here the 'result' is the input at x2 made by repeating each frame, so both halves must agree)."""
    from core.app.clips import write_montage

    doubled = str(tmp_path / "doubled.mp4")
    with open_reader(short_clip) as reader:
        frames = list(reader)
        with open_writer(doubled, reader.fps * 2, reader.width, reader.height) as writer:
            for frame in frames:
                writer.write(frame)
                writer.write(frame)
    montage = str(tmp_path / "montage.mp4")
    assert write_montage(short_clip, doubled, montage) == 2 * len(frames)
    with open_reader(montage) as reader:
        pictures = list(reader)
    for j, picture in enumerate(pictures):
        left, right = picture[:, :176].astype(int), picture[:, 176:].astype(int)
        assert np.abs(left - frames[j // 2].astype(int)).mean() < 3      # H.264 at CRF 18, twice
        assert np.abs(left - right).mean() < 3


# ---------------------------------------------------------------------------------------------- bind address

def other_addresses():
    """This machine's IPv4 addresses that are not loopback (the one a default route would use, and the host
    name's)."""
    found = set()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))      # no packet is sent: this only picks the outgoing interface
        found.add(probe.getsockname()[0])
    except OSError:
        pass
    finally:
        probe.close()
    try:
        found.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET))
    except OSError:
        pass
    return sorted(a for a in found if not a.startswith("127.") and a != "0.0.0.0")


def refused(address, port):
    try:
        with socket.create_connection((address, port), timeout=3):
            return False
    except OSError as error:
        return error.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH) or \
            isinstance(error, (ConnectionRefusedError, socket.timeout))


def test_loopback_server_is_not_reachable_elsewhere(served):
    app, server = served
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        pass                                                # reachable where it is bound
    assert refused("127.0.0.2", port)                       # another loopback address: not bound there
    for address in other_addresses():                       # this machine's other interfaces
        assert refused(address, port), address


def test_tool_binds_loopback_by_default():
    from tools.app import parse_args

    args = parse_args([])
    assert args.host == "127.0.0.1" and args.port == 7860


# ---------------------------------------------------------------------------------------------- the browser

def browser_or_skip():
    """Playwright's sync API and a launched headless Debian Chromium, or skip (fail with UPR_REQUIRE_FRONTS=1)."""
    missing = None
    if not os.path.exists(CHROMIUM):
        missing = f"{CHROMIUM} is missing (bash .ci/setup_browser.sh)"
    else:
        try:
            from playwright.sync_api import sync_playwright   # noqa: F401
        except ImportError:
            missing = "Playwright is missing (bash .ci/setup_browser.sh)"
    if missing:
        missing_front(missing)
    from playwright.sync_api import sync_playwright
    return sync_playwright


@pytest.fixture(scope="module")
def page(served):
    sync_playwright = browser_or_skip()
    app, server = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(accept_downloads=True)
        tab = context.new_page()
        tab.set_default_timeout(90_000)
        tab.goto(server.url)
        tab.wait_for_selector("body[data-ready='1']")
        yield tab
        context.close()
        browser.close()


def shown_image(page, element="result"):
    return decode_data_url(page.get_attribute(f"#{element}", "src"))


def drop_file(page, zone, path, mime="image/png"):
    """Drop ``path`` on the element ``zone`` as a user's drag and drop does (a DragEvent carrying the file)."""
    page.evaluate("""([zone, name, data, mime]) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: mime }));
        document.getElementById(zone).dispatchEvent(
            new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [zone, os.path.basename(path), base64.b64encode(open(path, "rb").read()).decode(), mime])


def test_browser_two_frames_and_slider(page, interpolator):
    drop_file(page, "drop-frame0", FRAME0)            # dropped on the zone
    page.set_input_files("#frame1", FRAME1)            # chosen with the file input
    page.wait_for_selector("#result[data-ready='1'][data-t='0.5']")
    frame0, frame1 = read_image(FRAME0), read_image(FRAME1)
    np.testing.assert_array_equal(shown_image(page), interpolator.interpolate(frame0, frame1, 0.5))
    page.fill("#t", "0.25")                          # moves the slider (input event)
    page.wait_for_selector("#result[data-ready='1'][data-t='0.25']")
    np.testing.assert_array_equal(shown_image(page), interpolator.interpolate(frame0, frame1, 0.25))
    assert page.inner_text("#t-value") == "0.25"
    assert page.is_visible("#flow01") and page.is_visible("#flow10")
    assert not page.is_visible("#diff")              # no ground truth yet
    page.set_input_files("#gt", GT)
    page.wait_for_selector("#drop-gt img:not([hidden])")       # the ground truth is uploaded
    page.fill("#t", "0.5")
    page.wait_for_selector("#result[data-ready='1'][data-t='0.5']")
    assert page.inner_text("#psnr") == "PSNR 28.93 dB" and page.is_visible("#diff")


def test_browser_bad_uploads_are_messages(page, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000))
    page.set_input_files("#frame1", str(broken))
    page.wait_for_selector("#message[data-kind='error']")
    assert page.inner_text("#message").startswith("broken.png: not an image")
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(int(UPLOAD_LIMIT_MB * 1e6) + 5000))
    page.set_input_files("#clip", str(big))
    page.wait_for_function("document.getElementById('message').textContent.startsWith('big.mp4')")
    assert page.inner_text("#message") == "big.mp4: 1.005 MB is larger than the limit of 1 MB"
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(3000))
    page.set_input_files("#clip", str(corrupt))
    page.wait_for_function("document.getElementById('message').textContent.startsWith('corrupt.mp4')")
    assert "not a video" in page.inner_text("#message")
    assert page.is_disabled("#convert")
    page.set_input_files("#frame1", FRAME1)            # the page goes on working
    page.wait_for_selector("#message[data-kind='info']")


def test_browser_clip_download(page, short_clip, tmp_path):
    page.set_input_files("#clip", short_clip)
    page.wait_for_selector("#convert:not([disabled])")
    page.select_option("#rate-mode", "4")
    page.click("#convert")
    page.wait_for_selector("#download:not([hidden])", timeout=120_000)
    assert page.inner_text("#progress-text").startswith(f"done: {CLIP_FRAMES} frames")
    assert float(page.get_attribute("#progress", "value") or page.eval_on_selector("#progress", "e => e.value")) == 1
    with page.expect_download() as caught:
        page.click("#download")
    path = str(tmp_path / "result.mp4")
    caught.value.save_as(path)
    frames, width, height, fps = count_frames(path)
    assert (frames, width, height) == (4 * CLIP_FRAMES, 176, 144)
    assert caught.value.suggested_filename == "carphone_short_x4.mp4"
    assert page.get_attribute("#montage", "src").endswith("_montage.mp4")
