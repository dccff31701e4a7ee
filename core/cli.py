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
Without --model_file the weights are found by --model_size (:func:`model_file_from_args`), and the file loaded
is printed as one line on stderr.

Every tool builds its parser with :func:`tool_parser`: ``--help`` is a short usage (summary, example commands,
one line per option) ending in ``Details: docs/<page>.md``, where the long explanations live.
"""
import argparse
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


# ------------------------------------------------------------------------------------------------------ --help

HELP_WIDTH = 120          # columns of --help: each option's help fits on one line
HELP_POSITION = 35        # column where the help of an option starts


def tool_parser(prog, doc, details, usage=None):
    """The argparse parser of a tool, so that ``--help`` is a short usage: the description is ``doc``'s summary
    line and its example commands (the lines up to the first unindented paragraph after the summary), the epilog
    the one line ``Details: <details>`` (a docs page, where the long explanations live), and each option's help
    one line. ``usage``: a short explicit usage line (default: argparse's, listing every option)."""
    lines = (doc or "").strip("\n").splitlines()
    head = lines[:1]
    for line in lines[1:]:
        if line.strip() and not line[:1].isspace():
            break
        head.append(line)
    formatter = functools.partial(argparse.RawDescriptionHelpFormatter, width=HELP_WIDTH,
                                  max_help_position=HELP_POSITION)
    return argparse.ArgumentParser(prog=prog, usage=usage, description="\n".join(head).rstrip(),
                                   epilog=f"Details: {details}", formatter_class=formatter)


# ---------------------------------------------------------------------------------------------- model options

def add_model_arguments(parser, pyramid=True, pyr_level=None, nr_lvl_skipped=None, model_size=True,
                        compile_option=True):
    """Add the model options every interpolating tool shares: --model_size, --model_file, --device, --threads,
    --precision, --scale, --compile (unless ``compile_option`` is False: a tool that gives --compile its own
    meaning), --low_memory, --still_threshold and (with ``pyramid``) --pyr_level / --nr_lvl_skipped, whose
    defaults are ``pyr_level`` / ``nr_lvl_skipped`` (None: chosen by resolution).
    --scale skips more finest levels on top of the pyramid chosen (:func:`core.interpolator.scaled_pyramid`)."""
    from .options import MODEL_SIZES

    group = parser.add_argument_group("model")
    if model_size:
        group.add_argument("--model_size", default="base", choices=list(MODEL_SIZES),
                           help="the size the checkpoint was trained as (default: base)")
    group.add_argument("--model_file", default=None, metavar="FILE",
                       help="checkpoint .pkl/.pth/.safetensors"
                            + (" (default: found by --model_size in checkpoints/)" if model_size else ""))
    group.add_argument("--device", default="auto", help="auto (cuda > mps > cpu, the default), cpu, cuda, cuda:1, ...")
    group.add_argument("--threads", type=int, default=None, metavar="N",
                       help="CPU threads for torch (default: torch's choice)")
    group.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                       help="fp32: exact (default); bf16 / fp16: faster autocast (bf16: AVX512-BF16 CPUs, GPUs)")
    group.add_argument("--scale", type=float, default=1.0, metavar="S",
                       help="estimate motion at S x the resolution: 1 (default), 0.5, 0.25 or 0.125 (faster)")
    if compile_option:
        group.add_argument("--compile", action="store_true",
                           help="run the model through torch.compile (first pairs slow while it compiles)")
    group.add_argument("--low_memory", default="auto", choices=["auto", "on", "off"],
                       help="synthesize large frames in exact strips (default auto: above ~1080p)")
    group.add_argument("--still_threshold", type=float, default=None, metavar="D",
                       help="pairs with mean abs difference < D are returned as is (default 0.25/255; 0: off)")
    if pyramid:
        auto = "by resolution, 3 up to 640 px ... 7 for 4K"
        group.add_argument("--pyr_level", type=int, default=pyr_level, metavar="L",
                           help=f"pyramid levels (default: {pyr_level if pyr_level is not None else auto})")
        group.add_argument("--nr_lvl_skipped", type=int, default=nr_lvl_skipped, metavar="S",
                           help="finest levels that skip motion estimation (default: "
                                f"{nr_lvl_skipped if nr_lvl_skipped is not None else 'automatic'})")
    return group


SCALE_CHOICES = (1.0, 0.5, 0.25, 0.125)
"""--scale values (:data:`core.interpolator.SCALES`)."""


def interpolator_options(args):
    """The keyword arguments for :class:`core.Interpolator` taken from parsed ``args`` (also sets --threads)."""
    import torch

    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    options = {"precision": getattr(args, "precision", "fp32"),
               "low_memory": {"auto": "auto", "on": True, "off": False}[getattr(args, "low_memory", "auto")]}
    if getattr(args, "still_threshold", None) is not None:   # checked by core.Interpolator (InputError)
        options["still_threshold"] = args.still_threshold
    scale = getattr(args, "scale", 1.0)
    if scale is not None:
        if scale not in SCALE_CHOICES:
            raise UsageError(f"--scale must be 1, 0.5, 0.25 or 0.125, got {scale:g}")
        options["scale"] = scale
    if getattr(args, "compile", False):
        options["compile"] = True
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


def check_weights_output(path):
    """--out of a tool that writes weights: a UsageError unless it ends in .pkl, .pth, .pt or .safetensors."""
    if not path.endswith((".pkl", ".pth", ".pt", ".safetensors")):
        raise UsageError(f"--out must end in .pkl, .pth, .pt or .safetensors: {path}")


def select_device(name):
    """--device value -> torch.device, with a one-line UsageError when it is not available."""
    from .device import resolve_device
    try:
        return resolve_device(name)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"--device {name}: {error}") from None


def model_file_from_args(args):
    """The checkpoint ``args`` name: --model_file, or by --model_size the default of
    :func:`core.checkpoint.default_model_file` (base: an official ``checkpoints/upr.pkl`` if present, else the
    shipped ``checkpoints/upr-base.pkl``; large / LARGE: ``checkpoints/upr_large.pkl`` / ``upr-large.pkl`` and
    ``upr_llarge.pkl`` / ``upr-llarge.pkl``). An absolute path; a missing default is a CheckpointError saying
    where to put the file."""
    from .checkpoint import default_model_file

    if getattr(args, "model_file", None):
        return os.path.abspath(args.model_file)
    return default_model_file(getattr(args, "model_size", "base"))


def report_loaded(model_size, path):
    """The one line on stderr that every tool prints after loading weights."""
    print(f"loaded {model_size} weights from {path}", file=sys.stderr, flush=True)


def interpolator_from_args(args):
    """Build the :class:`core.Interpolator` described by ``args`` (see :func:`add_model_arguments`); prints the
    loaded file on stderr."""
    from .interpolator import Interpolator

    options = interpolator_options(args)
    device = select_device(args.device)
    model_size = getattr(args, "model_size", "base")
    model_file = model_file_from_args(args)
    interpolator = Interpolator.from_checkpoint(model_file, model_size, device, **options)
    report_loaded(interpolator.model.model_size, model_file)
    return interpolator
