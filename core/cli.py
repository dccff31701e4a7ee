"""Command-line plumbing shared by the demo and the tools.

Known errors -> one line on stderr and exit code 2, no traceback::

    from core.cli import cli_main

    @cli_main
    def main(argv=None):
        args = parser.parse_args(argv)
        ...                      # raise UsageError("...") (or let core's errors through) for bad input
        return 0

    if __name__ == "__main__":
        raise SystemExit(main())

The known errors are the project's input errors (:class:`UsageError`, ``InputError``, ``CheckpointError``,
``FrameError``, ``VideoError``), PyAV's ``FFmpegError`` and ``OSError`` (missing files, permissions, a full
disk). Anything else is a bug and keeps its traceback. Set ``UPR_DEBUG=1`` to get the traceback of known
errors too. argparse's own usage errors exit with 2 as well.

Model options shared by every tool that interpolates: :func:`add_model_arguments` adds ``--model_size``,
``--model_file``, ``--device`` (and ``--pyr_level`` / ``--nr_lvl_skipped``) and :func:`interpolator_from_args`
builds the :class:`core.Interpolator` from them; new Interpolator options belong in those two functions.
"""
import functools
import os
import sys

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """A bad command-line input; reported as one line, exit code 2."""


def known_errors(extra=()):
    """The exception classes reported as one line (see the module docstring)."""
    from .checkpoint import CheckpointError
    from .frames import FrameError
    from .interpolator import InputError

    errors = [UsageError, InputError, CheckpointError, FrameError, OSError, *extra]
    try:
        from .video import VideoError
        errors.append(VideoError)
    except ImportError:  # PyAV missing: video tools unavailable, the rest still works
        pass
    try:
        import av
        errors.append(av.FFmpegError)
    except ImportError:
        pass
    return tuple(errors)


def error_message(error):
    """A one-line description of ``error``."""
    if isinstance(error, OSError) and error.strerror and error.filename and not type(error).__module__.startswith("av"):
        message = f"{error.strerror}: {error.filename}"
    else:
        message = str(error) or type(error).__name__
    return " ".join(message.split())  # newlines and runs of spaces -> single spaces


def run_cli(main_fn, argv=None, extra_errors=()):
    """Call ``main_fn(argv)``; known errors print ``error: <message>`` on stderr and return 2.

    Returns ``main_fn``'s return value (0 for None). KeyboardInterrupt returns 130.
    """
    if os.environ.get("UPR_DEBUG"):
        result = main_fn(argv)
        return 0 if result is None else result
    try:
        result = main_fn(argv)
    except known_errors(extra_errors) as error:
        sys.stdout.flush()
        print(f"error: {error_message(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0 if result is None else result


def cli_main(fn=None, *, extra_errors=()):
    """Decorator: ``main(argv=None)`` that reports known errors as one line and returns an exit code."""
    def decorate(main_fn):
        @functools.wraps(main_fn)
        def wrapper(argv=None):
            return run_cli(main_fn, argv, extra_errors)
        wrapper.unwrapped = main_fn
        return wrapper
    return decorate(fn) if fn is not None else decorate


# ---------------------------------------------------------------------------------------------- model options

def add_model_arguments(parser, pyramid=True):
    """Add --model_size, --model_file, --device (and --pyr_level, --nr_lvl_skipped) to ``parser``."""
    from .options import MODEL_SIZES

    group = parser.add_argument_group("model")
    group.add_argument("--model_size", default="base", choices=list(MODEL_SIZES),
                       help="model size the checkpoint was trained as (default: base)")
    group.add_argument("--model_file", default=None,
                       help="checkpoint (.pkl/.pth/.safetensors; default: the shipped checkpoints/upr-base.pkl)")
    group.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, ...")
    if pyramid:
        group.add_argument("--pyr_level", type=int, default=None,
                           help="pyramid levels (default: automatic by resolution, 3 up to 640 px ... 7 for 4K)")
        group.add_argument("--nr_lvl_skipped", type=int, default=None,
                           help="coarse-to-fine levels skipped at the finest scales (default: automatic)")
    return group


def interpolator_options(args):
    """The keyword arguments for :class:`core.Interpolator` taken from parsed ``args``."""
    options = {}
    pyr_level = getattr(args, "pyr_level", None)
    skipped = getattr(args, "nr_lvl_skipped", None)
    if pyr_level is not None and pyr_level < 1:
        raise UsageError(f"--pyr_level must be at least 1, got {pyr_level}")
    if skipped is not None and (skipped < 0 or (pyr_level is not None and skipped >= pyr_level)):
        raise UsageError(f"--nr_lvl_skipped must lie in [0, pyr_level), got {skipped}")
    if pyr_level is not None:
        options["pyr_level"] = pyr_level
    if skipped is not None:
        options["nr_lvl_skipped"] = skipped
    return options


def interpolator_from_args(args):
    """Build the :class:`core.Interpolator` described by ``args`` (see :func:`add_model_arguments`)."""
    from .checkpoint import CheckpointError
    from .device import resolve_device
    from .interpolator import Interpolator

    options = interpolator_options(args)
    try:
        device = resolve_device(args.device)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"--device {args.device}: {error}") from None
    try:
        return Interpolator.from_checkpoint(args.model_file, args.model_size, device, **options)
    except CheckpointError as error:
        if args.model_file is None:
            raise CheckpointError(f"{error} (the shipped base checkpoint is missing: pass --model_file)") from None
        raise
