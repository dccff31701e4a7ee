"""Speed and memory of UPR-Net per model size: latency, x8 throughput, a FLOP floor, and peak memory.

    python -m tools.runtime                                   # base, large, LARGE on the default device
    python -m tools.runtime --model_sizes base --threads 2 --no-memory --out_json runtime.json

What each measurement is (latency, x8 throughput, op shares, FLOP floor, RIFE, compiled, ONNX Runtime, peak
memory) and the measured figures: docs/performance.md.
"""
import argparse
import contextlib
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn

import core
from core.frames import pad_multiple
from core.interpolator import REPO_ROOT, SHIPPED_CHECKPOINT, choose_pyramid, synthesized_in_strips
from core.cli import interpolator_options, report_loaded, select_device, tool_parser
from core.model import motion_estimator
from core.ops import Splatting
from tools.benchmark_common import add_benchmark_model_arguments, check_pyramid, guarded, positive_int, write_json

X8_TIMES = [k / 8 for k in range(1, 8)]
MEMORY_RESOLUTIONS = ("640x480", "1920x1080", "3840x2160")


def resolution(text):
    """ "WIDTHxHEIGHT" -> (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return width, height


def build_parser():
    parser = tool_parser("python -m tools.runtime", __doc__, "docs/performance.md",
                         usage="%(prog)s [--model_sizes SIZE [SIZE ...]] [options]")
    parser.add_argument("--model_sizes", nargs="+", choices=list(core.MODEL_SIZES), default=list(core.MODEL_SIZES),
                        metavar="SIZE", help=f"sizes to measure: {' '.join(core.MODEL_SIZES)} (default: all)")
    add_benchmark_model_arguments(parser, pyr_level=3, nr_lvl_skipped=0, model_size=False, compile_option=False)
    parser.add_argument("--resolution", type=resolution, default=(640, 480), metavar="WxH",
                        help="frame size for latency and throughput (default: 640x480)")
    parser.add_argument("--repeats", type=positive_int, default=10, metavar="N",
                        help="timed runs for latency (default: 10)")
    parser.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed runs first (default: 2)")
    parser.add_argument("--throughput_repeats", type=int, default=3, metavar="N",
                        help="timed x8 runs of each kind (default: 3; 0 skips throughput)")
    parser.add_argument("--matmul_size", type=positive_int, default=4096, metavar="N",
                        help="N of the N x N float32 matmul that measures the FLOP rate (default: 4096)")
    parser.add_argument("--matmul_repeats", type=positive_int, default=3, metavar="N",
                        help="timed matmuls (default: 3)")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                        help="measure peak memory in fresh processes (default: on)")
    parser.add_argument("--memory_resolutions", nargs="+", type=resolution,
                        default=[resolution(r) for r in MEMORY_RESOLUTIONS], metavar="WxH",
                        help="frame sizes for peak memory (default: 640x480 1920x1080 3840x2160)")
    parser.add_argument("--compile", dest="time_compiled", action="store_true",
                        help="also time the model compiled with torch.compile (Inductor) vs eager")
    parser.add_argument("--rife_dir", default=None, metavar="DIR",
                        help="also time RIFE v4 (folder with its ifnet.py and flownet.pkl) on the same frames")
    parser.add_argument("--onnx", default=None, metavar="FILE",
                        help="also time this ONNX file (tools.export_onnx) in ONNX Runtime")
    parser.add_argument("--_measure_peak", action="store_true", help=argparse.SUPPRESS)
    return parser


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(function, device):
    """Wall time in seconds of ``function()``, the device synchronized before and after."""
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def median_time(function, device, repeats, warmup=0):
    for _ in range(warmup):
        function()
    return statistics.median(timed(function, device) for _ in range(repeats))


def matmul_rate(device, size=4096, repeats=3):
    """float32 FLOP/s of an N x N @ N x N matmul on ``device`` (median of ``repeats``, after one warm-up)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = median_time(lambda: torch.mm(a, b), device, repeats, warmup=1)
    return 2 * size ** 3 / seconds


def count_conv_flops(model, run):
    """FLOPs (2 per multiply-add) of every Conv2d / ConvTranspose2d call while ``run()`` executes."""
    total = 0

    def conv_hook(module, inputs, output):
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):   # every input value meets Cout/groups x k x k weights
            macs = inputs[0].numel() * (module.out_channels // module.groups) * kernel
        else:                                        # every output value sums Cin/groups x k x k products
            macs = output.numel() * (module.in_channels // module.groups) * kernel
        total += 2 * macs

    handles = [m.register_forward_hook(conv_hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return total


def build_sized_model(size, model_file=None):
    """UPR-Net of ``size`` with ``model_file``, the shipped checkpoint (base), or random weights.
    Returns (model, description of the weights)."""
    model = core.build_model(size)
    if model_file:
        return core.load_weights(model, model_file), os.path.abspath(model_file)
    if size == "base" and os.path.isfile(SHIPPED_CHECKPOINT):
        return core.load_weights(model, SHIPPED_CHECKPOINT), SHIPPED_CHECKPOINT
    return model, "random"


@contextlib.contextmanager
def timing_ops(device):
    """Seconds spent in splatting and in the correlation while the context is open: yields a dict that fills in.

    Wraps ``Splatting.sum`` (splat preparation runs inside it) and the correlation as the motion estimator calls
    it; neither calls the other, so nothing is counted twice."""
    seconds = {"splatting": 0.0, "correlation": 0.0}

    def timer(name, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            synchronize(device)
            start = time.perf_counter()
            result = function(*args, **kwargs)
            synchronize(device)
            seconds[name] += time.perf_counter() - start
            return result
        return wrapper

    originals = (Splatting.sum, motion_estimator.correlation)
    Splatting.sum = timer("splatting", Splatting.sum)
    motion_estimator.correlation = timer("correlation", motion_estimator.correlation)
    try:
        yield seconds
    finally:
        Splatting.sum, motion_estimator.correlation = originals


def random_frames(width, height, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    frames = [torch.rand(1, 3, height, width, generator=generator) for _ in range(2)]
    return [frame.to(device) for frame in frames]


def measure_speed(interpolator, args, rate):
    """Latency, FLOPs, floor and x8 throughput of one model at --resolution."""
    device = interpolator.device
    width, height = args.resolution
    img0, img1 = random_frames(width, height, device)
    one_frame = lambda: interpolator.interpolate_tensors(img0, img1, [0.5])
    latencies = []
    for _ in range(args.warmup):
        one_frame()
    for _ in range(args.repeats):
        latencies.append(timed(one_frame, device))
    latency = statistics.median(latencies)
    flops = count_conv_flops(interpolator.model, one_frame)
    with timing_ops(device) as op_seconds:
        total = sum(timed(one_frame, device) for _ in range(args.repeats))
    shares = {f"{name}_share": spent / total for name, spent in op_seconds.items()}
    result = {"latency_ms": latency * 1e3, "latencies_ms": [t * 1e3 for t in latencies],
              "conv_gflop": flops / 1e9, "conv_gflop_unpadded": None, "floor_ms": flops / rate * 1e3,
              "floor_over_latency": flops / rate / latency, **shares}
    pyr_level, nr_lvl_skipped = interpolator.pyramid_for(height, width)
    if width % 2 ** (pyr_level + 1) == 0 and height % 2 ** (pyr_level + 1) == 0:   # the paper's bare forward
        with torch.no_grad():
            bare = count_conv_flops(interpolator.model,
                                    lambda: interpolator.model(img0, img1, 0.5, pyr_level, nr_lvl_skipped))
        result["conv_gflop_unpadded"] = bare / 1e9
    if args.throughput_repeats > 0:
        reuse = median_time(lambda: interpolator.interpolate_tensors(img0, img1, X8_TIMES), device,
                            args.throughput_repeats)
        independent = median_time(lambda: [interpolator.interpolate_tensors(img0, img1, [t]) for t in X8_TIMES],
                                  device, args.throughput_repeats)
        x8_flops = count_conv_flops(interpolator.model,
                                    lambda: interpolator.interpolate_tensors(img0, img1, X8_TIMES))
        result.update({"x8_reuse_fps": len(X8_TIMES) / reuse, "x8_independent_fps": len(X8_TIMES) / independent,
                       "x8_speedup": independent / reuse, "x8_flop_ratio": len(X8_TIMES) * flops / x8_flops})
    return result


def measure_compiled(interpolator, args, eager_latency):
    """Latency with ``torch.compile(fullgraph=True)`` applied to the model's estimate_motion and synthesize (what
    the Interpolator calls), median of --repeats after the compiling call and --warmup; the model is restored."""
    device = interpolator.device
    model = interpolator.model
    img0, img1 = random_frames(*args.resolution, device)
    one_frame = lambda: interpolator.interpolate_tensors(img0, img1, [0.5])
    torch._dynamo.reset()
    model.estimate_motion = torch.compile(model.estimate_motion, fullgraph=True)
    model.synthesize = torch.compile(model.synthesize, fullgraph=True)
    try:
        compile_seconds = timed(one_frame, device)
        latency = median_time(one_frame, device, args.repeats, args.warmup)
    finally:
        del model.estimate_motion, model.synthesize
        torch._dynamo.reset()
    return {"compiled_latency_ms": latency * 1e3, "compile_seconds": compile_seconds,
            "compiled_speedup": eager_latency / latency}


def measure_rife(folder, device, args):
    """Latency of RIFE v4 (core.baselines) interpolating t = 0.5 between the same frames, median of --repeats after
    --warmup; bf16 autocast with --precision bf16."""
    from core.baselines import RIFEInterpolator
    rife = RIFEInterpolator(folder, device)
    img0, img1 = random_frames(*args.resolution, device)

    def one_frame():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            rife.interpolate_tensors(img0, img1, [0.5])

    latency = median_time(one_frame, device, args.repeats, args.warmup)
    return {"latency_ms": latency * 1e3, "folder": os.path.abspath(folder), "precision": args.precision}


def measure_onnx(path, args, threads):
    """ONNX Runtime (CPU) latency of an exported file (tools.export_onnx) interpolating t = 0.5 between the same
    frames padded to max(64, its size multiple), median of --repeats after --warmup."""
    import onnx
    from core.frames import pad_to_multiple
    from tools.export_onnx import ort_session, run_ort

    metadata = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    multiple = max(64, int(metadata.get("upr_multiple", 16)))
    session = ort_session(path, threads)
    img0, img1 = (pad_to_multiple(img, multiple) for img in random_frames(*args.resolution, torch.device("cpu")))
    latency = median_time(lambda: run_ort(session, img0, img1, 0.5), torch.device("cpu"), args.repeats, args.warmup)
    return {"latency_ms": latency * 1e3, "file": os.path.abspath(path), "threads": threads,
            "padded": f"{img0.shape[-1]}x{img0.shape[-2]}", "pyr_level": metadata.get("upr_pyr_level")}


def _proc_mib(path, key):
    """The "key: N kB" line of a /proc file in MiB, or None where the file or the line does not exist."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def max_rss_mb():
    """Peak resident set size of this process so far, in MiB.

    Linux: VmHWM from /proc/self/status (ru_maxrss survives fork + exec, so a child would report its parent's
    peak when that is higher). Elsewhere ru_maxrss (KiB on Linux, bytes on macOS)."""
    peak = _proc_mib("/proc/self/status", "VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measure_peak_here(args):
    """Child process body: one interpolation at --resolution with the pyramid chosen by resolution, then one
    JSON line with the peak memory on stdout."""
    size = args.model_sizes[0]
    device = select_device(args.device)
    width, height = args.resolution
    options = interpolator_options(args)
    options.pop("pyr_level"), options.pop("nr_lvl_skipped")             # memory: the pyramid chosen by resolution
    interpolator = core.Interpolator(core.build_model(size), device, **options)  # weights do not change memory
    img0, img1 = random_frames(width, height, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    baseline = max_rss_mb()
    interpolator.interpolate_tensors(img0, img1, [0.5])
    synchronize(device)
    pyr_level, nr_lvl_skipped = interpolator.pyramid_for(height, width)
    report = {"model_size": size, "resolution": f"{width}x{height}", "pyr_level": pyr_level,
              "nr_lvl_skipped": nr_lvl_skipped, "threads": torch.get_num_threads(),
              "baseline_rss_mb": baseline, "peak_rss_mb": max_rss_mb(),
              "cuda_peak_mb": torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None}
    print(json.dumps(report))


def measure_peak_in_subprocess(size, width, height, args, threads):
    """Run ``python -m tools.runtime --_measure_peak`` for one size and resolution; returns its report (or
    {"error": ...} when the child failed, e.g. ran out of memory)."""
    command = [sys.executable, "-m", "tools.runtime", "--_measure_peak", "--model_sizes", size,
               "--resolution", f"{width}x{height}", "--device", args.device, "--threads", str(threads),
               "--precision", args.precision, "--low_memory", args.low_memory]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"resolution": f"{width}x{height}", "error": reason}
    return json.loads(lines[-1])


def available_memory_mb():
    """MemAvailable from /proc/meminfo in MiB, or None where that does not exist."""
    return _proc_mib("/proc/meminfo", "MemAvailable")


def in_strips(width, height, low_memory):
    """Whether the Interpolator synthesizes width x height in strips (padded for the pyramid chosen by
    resolution); ``low_memory`` as the Interpolator takes it (True, False or "auto")."""
    m = pad_multiple(choose_pyramid(height, width)[0])
    return synthesized_in_strips(-(-height // m) * m, -(-width // m) * m, low_memory)


def predicted_peak_mb(size, width, height, smaller=None, low_memory="auto"):
    """Peak RSS (MiB) expected for one interpolation at width x height on the CPU: a baseline plus a cost per
    pixel, taken from a smaller run's report (in the same whole-frame / strips regime) when that is higher than
    the prior (base measured ~1,700 bytes per pixel at 1080p whole-frame, ~700 at 4K in strips; wider models
    need proportionally more). ``low_memory``: True, False or "auto", as the Interpolator takes it."""
    strips = in_strips(width, height, low_memory)
    per_pixel = (800 if strips else 1800) * core.model_options(size).feature_channels / 16
    baseline = 700.0
    if smaller is not None and in_strips(*map(int, smaller["resolution"].split("x")), low_memory) == strips:
        done_width, done_height = (int(v) for v in smaller["resolution"].split("x"))
        observed = (smaller["peak_rss_mb"] - smaller["baseline_rss_mb"]) * 2 ** 20 / (done_width * done_height)
        per_pixel, baseline = max(per_pixel, observed), smaller["baseline_rss_mb"]
    return baseline + per_pixel * width * height / 2 ** 20


def format_rows(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def run(argv=None):
    args = build_parser().parse_args(argv)
    options = interpolator_options(args)                                    # also applies --threads
    threads = torch.get_num_threads()
    if args._measure_peak:
        return measure_peak_here(args)
    if args.model_file and len(args.model_sizes) != 1:
        raise ValueError("--model_file needs exactly one --model_sizes entry (the size of that checkpoint)")
    check_pyramid(args.pyr_level, args.nr_lvl_skipped)
    device = select_device(args.device)
    started = time.perf_counter()
    width, height = args.resolution
    padded = [-(-v // pad_multiple(args.pyr_level)) * pad_multiple(args.pyr_level) for v in (width, height)]
    print(f"UPR-Net runtime on {device}, torch threads: {threads}, precision {args.precision}; frames {width}x{height} "
          f"(padded to {padded[0]}x{padded[1]}), pyramid L={args.pyr_level}, skipped {args.nr_lvl_skipped}")
    rate = matmul_rate(device, args.matmul_size, args.matmul_repeats)
    print(f"float32 matmul {args.matmul_size}x{args.matmul_size}: {rate / 1e9:.1f} GFLOP/s "
          f"(median of {args.matmul_repeats})")
    result = {"tool": "runtime", "device": str(device), "threads": threads, "precision": args.precision,
              "channels_last": device.type == "cpu", "resolution": f"{width}x{height}",
              "pyr_level": args.pyr_level, "nr_lvl_skipped": args.nr_lvl_skipped, "repeats": args.repeats,
              "warmup": args.warmup, "matmul_gflops": rate / 1e9, "sizes": {}}
    for size in args.model_sizes:
        model, weights = build_sized_model(size, args.model_file)
        if weights == "random":
            print(f"{size}: no checkpoint, using random weights (timing does not depend on them)")
        else:
            report_loaded(size, weights)
        interpolator = core.Interpolator(model, device, **options)
        entry = {"params": sum(p.numel() for p in model.parameters()), "weights": weights}
        entry.update(measure_speed(interpolator, args, rate))
        result["sizes"][size] = entry
        unpadded = entry["conv_gflop_unpadded"]
        print(f"{size}: {entry['params']:,} parameters, latency {entry['latency_ms']:.1f} ms, "
              f"{entry['conv_gflop']:.1f} conv GFLOP"
              + (f" ({unpadded:.1f} for the bare forward at {width}x{height})" if unpadded is not None else "")
              + f", floor {entry['floor_ms']:.1f} ms "
              f"({entry['floor_over_latency']:.2f} of the latency), splatting {100 * entry['splatting_share']:.1f}%, "
              f"correlation {100 * entry['correlation_share']:.1f}%"
              + (f", x8 {entry['x8_reuse_fps']:.2f} frames/s reusing motion vs {entry['x8_independent_fps']:.2f} "
                 f"independent ({entry['x8_speedup']:.2f}x; {entry['x8_flop_ratio']:.2f}x fewer conv FLOPs)"
                 if "x8_speedup" in entry else ""))
        if args.time_compiled:
            entry.update(measure_compiled(interpolator, args, entry["latency_ms"] / 1e3))
            print(f"{size}: compiled (torch.compile, Inductor) latency {entry['compiled_latency_ms']:.1f} ms vs "
                  f"eager {entry['latency_ms']:.1f} ms ({entry['compiled_speedup']:.2f}x), first call "
                  f"{entry['compile_seconds']:.1f} s (compiling)")
        del interpolator, model
    if args.rife_dir:
        result["rife"] = measure_rife(args.rife_dir, device, args)
        print(f"RIFE v4: latency {result['rife']['latency_ms']:.1f} ms at {width}x{height} ({args.precision})")
    if args.onnx:
        result["onnx"] = ort = measure_onnx(args.onnx, args, threads)
        print(f"ONNX Runtime (CPU, {threads} threads): latency {ort['latency_ms']:.1f} ms at {width}x{height} "
              f"(padded to {ort['padded']}, L={ort['pyr_level']}) for {args.onnx}")
    if args.memory:
        for size in args.model_sizes:
            reports, last = {}, None
            for mem_width, mem_height in sorted(args.memory_resolutions, key=lambda r: r[0] * r[1]):
                name = f"{mem_width}x{mem_height}"
                pyramid = choose_pyramid(mem_height, mem_width)
                available = available_memory_mb() if device.type == "cpu" else None
                if available is not None:
                    need = predicted_peak_mb(size, mem_width, mem_height, last, options["low_memory"])
                    if need > 0.9 * available:     # do not let the OOM killer pick another process
                        reports[name] = {"resolution": name, "error": f"skipped: would need about {need / 1024:.1f} "
                                         f"GiB, {available / 1024:.1f} GiB available"}
                        print(f"{size}: {name} {reports[name]['error']}")
                        continue
                print(f"{size}: peak memory at {name} (L={pyramid[0]}, skipped {pyramid[1]}) ...", flush=True)
                reports[name] = measure_peak_in_subprocess(size, mem_width, mem_height, args, threads)
                last = reports[name] if "error" not in reports[name] else last
            result["sizes"][size]["memory"] = reports
    result["seconds"] = round(time.perf_counter() - started, 3)
    print()
    print(format_speed_table(result))
    if args.memory:
        print()
        print(format_memory_table(result))
    if args.out_json:
        write_json(args.out_json, result)
        print(f"results written to {os.path.abspath(args.out_json)}")
    return result


def format_speed_table(result):
    rows = [("size", "params", "weights", "latency ms", "conv GFLOP", "floor ms", "floor/latency",
             "splat %", "corr %", "x8 reuse fps", "x8 indep. fps", "x8 ratio", "x8 FLOP ratio")]
    for size, e in result["sizes"].items():
        x8 = ([f"{e['x8_reuse_fps']:.2f}", f"{e['x8_independent_fps']:.2f}", f"{e['x8_speedup']:.2f}",
               f"{e['x8_flop_ratio']:.2f}"] if "x8_speedup" in e else ["-"] * 4)
        rows.append((size, f"{e['params']:,}", "random" if e["weights"] == "random" else "checkpoint",
                     f"{e['latency_ms']:.1f}", f"{e['conv_gflop']:.1f}", f"{e['floor_ms']:.1f}",
                     f"{e['floor_over_latency']:.2f}", f"{100 * e['splatting_share']:.1f}",
                     f"{100 * e['correlation_share']:.1f}", *x8))
    return (f"{result['device']}, torch threads: {result['threads']}, {result['resolution']}, "
            f"matmul {result['matmul_gflops']:.1f} GFLOP/s\n" + format_rows(rows))


def format_memory_table(result):
    rows = [("size", "resolution", "pyramid", "peak RSS MB", "baseline MB", "CUDA peak MB")]
    for size, e in result["sizes"].items():
        for name, r in e.get("memory", {}).items():
            if "error" in r:
                rows.append((size, name, "-", f"failed: {r['error']}", "-", "-"))
                continue
            cuda = f"{r['cuda_peak_mb']:.0f}" if r.get("cuda_peak_mb") is not None else "-"
            rows.append((size, name, f"L={r['pyr_level']}/S={r['nr_lvl_skipped']}", f"{r['peak_rss_mb']:.0f}",
                         f"{r['baseline_rss_mb']:.0f}", cuda))
    return "peak memory, one fresh process per row (RSS includes Python and torch)\n" + format_rows(rows)


def main(argv=None):
    guarded(run, argv)


if __name__ == "__main__":
    main()
