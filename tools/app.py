"""A local web app: drop two frames and move t, or drop a clip and get it at x2, x4 or a target rate.

    python -m tools.app                                  # http://127.0.0.1:7860/
    python -m tools.app --port 8080 --model_size large --device cuda
    python -m tools.app --host 0.0.0.0 --max_upload_mb 200   # reachable from other machines: only on trusted networks

Limits, the queue, what is written where, the page's elements: docs/app.md.
"""
import argparse
import signal
import sys

from core.cli import UsageError, add_model_arguments, cli_main, interpolator_from_args, tool_parser


def parse_args(argv=None):
    from core.app import Limits

    defaults = Limits()
    parser = tool_parser("python -m tools.app", __doc__, "docs/app.md")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: a free one)")
    parser.add_argument("--max_upload_mb", type=float, default=defaults.max_upload_mb, metavar="MB",
                        help=f"largest file accepted (default {defaults.max_upload_mb:g} MB)")
    parser.add_argument("--max_pixels", type=int, default=defaults.max_pixels, metavar="P",
                        help=f"largest frame, width x height (default {defaults.max_pixels})")
    parser.add_argument("--max_frames", type=int, default=defaults.max_frames, metavar="N",
                        help=f"longest clip in frames (default {defaults.max_frames})")
    parser.add_argument("--verbose", action="store_true", help="log every request on stderr")
    add_model_arguments(parser)
    return parser.parse_args(argv)


def _stop(signum, frame):
    raise KeyboardInterrupt


@cli_main
def main(argv=None):
    args = parse_args(argv)
    from core.app import App, Limits, make_server

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must lie in [0, 65535], got {args.port}")
    for name in ("max_upload_mb", "max_pixels", "max_frames"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name} must be positive, got {getattr(args, name)}")
    limits = Limits(max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels, max_frames=args.max_frames)
    try:   # bind before loading the model: a busy port fails at once
        server = make_server(None, args.host, args.port, verbose=args.verbose)
    except OSError as error:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    app = None
    signal.signal(signal.SIGTERM, _stop)   # a plain `kill` also removes the temporary folder
    try:
        interpolator = interpolator_from_args(args)
        app = App(interpolator, limits,
                  model_label=interpolator.model.model_size)
        server.app = app
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"warning: listening on {args.host}: other machines can reach this app", file=sys.stderr)
        print(f"serving on {server.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        server.serve_forever()
    finally:
        server.server_close()
        if app is not None:
            app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
