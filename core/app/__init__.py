"""A local web app for UPR-Net (``python -m tools.app``): two frames and a slider for t, or a clip to convert.

    from core.app import App, Limits, make_server
    app = App(interpolator, Limits(max_upload_mb=100))     # the model loaded once
    server = make_server(app, "127.0.0.1", 7860)           # loopback unless told otherwise
    server.serve_forever()

Standard library HTTP server and one plain HTML page (no other dependency, nothing fetched from the network).
Details: docs/app.md.
"""
from .jobs import DeviceQueue, Job
from .server import App, AppError, AppServer, Limits, make_server, serve_in_thread

__all__ = ["App", "AppError", "AppServer", "DeviceQueue", "Job", "Limits", "make_server", "serve_in_thread"]
