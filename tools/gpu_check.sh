#!/usr/bin/env bash
# One prepared check of the GPU path (docs/gpu.md): on one CUDA GPU in under 8 minutes, or on the CPU.
#
#     bash tools/gpu_check.sh                      # CUDA: pytest -m cuda, runtime, training speed, torchrun + NCCL,
#                                                  # the video engine at 1080p (core.engine against the bare model)
#     bash tools/gpu_check.sh --device cpu         # everything that runs on the CPU (Gloo, small sizes)
#     bash tools/gpu_check.sh --device cpu --quick # the fast subset the test suite runs
#
# Options: --device cuda|cpu (default cuda), --quick, --rife_dir DIR (also time RIFE v4), --out DIR (default
# $OUT if set, else gpu-check-out/), --wheels DIR (wheels to install into a scratch folder when a package such as
# PyAV is missing; default .whl/ where it exists), --budget SECONDS (a step whose time limit would end past this
# many seconds from the start is skipped and reported so; default 480 on CUDA, none on the CPU).
# Results: DIR/gpu_check.json (every step: command, exit code, seconds, and its parsed results) and DIR/gpu_check.log
# (all output). Exit code 0 when every step passed (on CUDA: and no test was skipped), 1 otherwise.
set -u -o pipefail

device=cuda
quick=0
rife_dir=""
out="${OUT:-gpu-check-out}"
wheels=""
budget=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        --rife_dir) rife_dir="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --wheels) wheels="$2"; shift 2 ;;
        --budget) budget="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown option $1" >&2; exit 2 ;;
    esac
done
case "$device" in cuda|cpu) ;; *) echo "gpu_check: --device must be cuda or cpu" >&2; exit 2 ;; esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2
mkdir -p "$out" || exit 2
out="$(cd "$out" && pwd)"
log="$out/gpu_check.log"
steps="$out/steps.tsv"
: >"$log"
: >"$steps"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || python=python
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
started=$(date +%s)
if [ -z "$budget" ]; then
    if [ "$device" = cuda ]; then budget=480; else budget=1000000; fi
fi

say() { echo "$*" | tee -a "$log"; }

# step NAME LIMIT COMMAND...: runs COMMAND (killed after LIMIT seconds) with its output in the log and records
# name, exit code and milliseconds; skipped when LIMIT would end past the budget
step() {
    local name="$1" limit="$2"; shift 2
    local elapsed=$(( $(date +%s) - started ))
    if [ $((elapsed + limit)) -gt "$budget" ]; then
        say "== $name: skipped: ${elapsed}s spent, its limit of ${limit}s would pass the budget of ${budget}s"
        printf '%s\t%s\t%s\t%s\n' "$name" "budget" "0" "$*" >>"$steps"
        return
    fi
    say "== $name: $*"
    local begin; begin=$(date +%s%N)
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=$?
    local ms=$(( ($(date +%s%N) - begin) / 1000000 ))
    say "== $name: exit code $rc after $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$ms" "$*" >>"$steps"
}

say "gpu_check: device $device, quick $quick, output $out, $(date -u +%FT%TZ)"

# ------------------------------------------------------------------ missing packages (PyAV) from carried wheels
if [ -z "$wheels" ] && [ -d "$root/.whl" ]; then wheels="$root/.whl"; fi
if ! "$python" -c "import av" >/dev/null 2>&1; then
    if [ -n "$wheels" ] && ls "$wheels"/*.whl >/dev/null 2>&1; then
        site="$(mktemp -d)"
        say "PyAV is missing: installing the wheels of $wheels into $site"
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl \
            2>&1 | tee -a "$log"
        export PYTHONPATH="$PYTHONPATH:$site"
    else
        say "warning: PyAV (import av) is missing and no wheels were given: tools.runtime and tools.train need it"
    fi
fi

# ------------------------------------------------------------------------------------------- environment
env_limit=60
if [ "$device" = cpu ]; then env_limit=600; fi                      # a loaded CPU takes long to import torch
step environment "$env_limit" "$python" - "$out/environment.json" <<'EOF'
import importlib.util, json, platform, sys
import torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "devices": [], "cupy": importlib.util.find_spec("cupy") is not None,
        "av": importlib.util.find_spec("av") is not None}
try:
    import triton
    info["triton"] = triton.__version__
except Exception as error:
    info["triton"] = None
    info["triton_error"] = repr(error)
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    info["devices"].append({"name": p.name, "capability": f"{p.major}.{p.minor}", "memory_gib": p.total_memory / 2 ** 30,
                            "multiprocessors": p.multi_processor_count})
from core.ops import registry
from core.ops.backends import triton as softsplat_triton
info["triton_kernels_available"] = softsplat_triton.available()
probe = torch.zeros(1, 1, 2, 2, device="cuda" if torch.cuda.is_available() else "cpu")
info["splat_backend_chosen"] = registry.backend_for(probe.device.type).name
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info, indent=2))
EOF

# ------------------------------------------------------------------------------------------- pytest -m cuda
if [ "$device" = cuda ]; then
    step pytest_cuda 240 "$python" -m pytest -q -m cuda tests/test_cuda.py -rs --junitxml "$out/pytest_cuda.xml" -p no:cacheprovider
else
    # the CUDA tests on the CPU: the Triton kernels in Triton's interpreter; CuPy left out
    selection=()
    if [ "$quick" = 1 ]; then
        selection=(-k "reference_vectors or kernels_agree or int64 or default_splatting or (training_step and fp32)")
    fi
    step pytest_cuda 900 env UPR_CUDA_TEST_DEVICE=cpu TRITON_INTERPRET=1 "$python" -m pytest -q -m cuda \
        tests/test_cuda.py -rs --junitxml "$out/pytest_cuda.xml" -p no:cacheprovider "${selection[@]}"
fi

# ------------------------------------------------------------------------------------ tools.training_speed
if [ "$device" = cuda ]; then
    # tools.train's training step (core.training.TrainingStep, its default options: the paper's Charbonnier +
    # census loss, no flow / matching loss, clipping or weight average) at the paper's batch (32 in total) and crop
    # (256x256) on one GPU, fp32 and bf16: steps/s and peak memory allocated; the data loader (8 workers) at that batch
    step training_speed 75 "$python" -m tools.training_speed --device cuda --batch_size 32 --crop 256 \
        --warmup 2 --repeats 3 --modes fp32 bf16 --loader_workers 8 --loader_batches 8 \
        --out_json "$out/training_speed.json"
elif [ "$quick" = 1 ]; then
    step training_speed 600 "$python" -m tools.training_speed --device cpu --threads 2 --batch_size 1 --crop 32 \
        --warmup 0 --repeats 1 --modes fp32 --loader_workers 0 --loader_batches 1 --out_json "$out/training_speed.json"
else
    step training_speed 600 "$python" -m tools.training_speed --device cpu --threads 2 --batch_size 2 --crop 64 \
        --warmup 1 --repeats 1 --modes fp32 bf16 --loader_workers 1 --loader_batches 2 \
        --out_json "$out/training_speed.json"
fi

# ------------------------------------------------------------------- torchrun smoke run of tools.train
# One process: tools.train sets up no process group for a world of 1, so the driver first checks the
# collective backend itself (NCCL on CUDA, Gloo on the CPU) with an all_reduce, then runs tools.train.main.
cat >"$out/ddp_smoke.py" <<'EOF'
import os, sys
import torch
import torch.distributed as dist

backend = sys.argv[1]
dist.init_process_group(backend)
device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if backend == "nccl" else torch.device("cpu")
if device.type == "cuda":
    torch.cuda.set_device(device)
value = torch.full((4,), float(dist.get_rank() + 1), device=device)
dist.all_reduce(value)
world = dist.get_world_size()
assert value.tolist() == [world * (world + 1) / 2] * 4, value
print(f"{backend} all_reduce over {world} process(es): ok")
dist.barrier()
dist.destroy_process_group()
import tools.train
tools.train.main(sys.argv[2:])
EOF
if [ "$device" = cuda ]; then
    train=(nccl --device cuda --steps 12 --batch_size 8 --crop_h 256 --crop_w 256 --nr_data_worker 4 --amp bf16
           --save_interval 6 --log_interval 2 --image_interval 6 --val_samples 8 --warmup_steps 2)
    limit=100
else
    train=(gloo --device cpu --threads 2 --steps 2 --batch_size 1 --crop_h 64 --crop_w 64 --pyr_level 2
           --nr_data_worker 0 --save_interval 2 --log_interval 1 --image_interval 2 --val_samples 2 --warmup_steps 1)
    limit=600
    if [ "$quick" = 1 ]; then
        train=(gloo --device cpu --threads 2 --steps 1 --batch_size 1 --crop_h 32 --crop_w 32 --pyr_level 2
               --nr_data_worker 0 --save_interval 1 --log_interval 1 --image_interval 1 --val_samples 1 --warmup_steps 1)
    fi
fi
rm -rf "$out/train-log"
step train_torchrun "$limit" "$python" -m torch.distributed.run --standalone --nproc_per_node 1 "$out/ddp_smoke.py" \
    "${train[@]}" --dataset synthetic --train_log_root "$out/train-log" --exp_name smoke --seed 7

# ------------------------------------------------------------------------------------------- tools.runtime
rife=()
if [ -n "$rife_dir" ]; then rife=(--rife_dir "$rife_dir"); fi
if [ "$device" = cuda ]; then
    # the paper's 640x480 (L=3), 1080p (L=6, 1 skipped), 4K (L=7, 2 skipped); fp32 and bf16; peak memory once
    for precision in fp32 bf16; do
        memory=(--no-memory)
        limit_640=45
        if [ "$precision" = fp32 ]; then memory=(--memory); limit_640=90; fi
        step "runtime_${precision}_640x480" "$limit_640" "$python" -m tools.runtime --device cuda --model_sizes base \
            --precision "$precision" --resolution 640x480 --pyr_level 3 --nr_lvl_skipped 0 "${memory[@]}" "${rife[@]}" \
            --out_json "$out/runtime_${precision}_640x480.json"
        step "runtime_${precision}_1920x1080" 45 "$python" -m tools.runtime --device cuda --model_sizes base \
            --precision "$precision" --resolution 1920x1080 --pyr_level 6 --nr_lvl_skipped 1 --no-memory \
            --throughput_repeats 1 "${rife[@]}" --out_json "$out/runtime_${precision}_1920x1080.json"
        step "runtime_${precision}_3840x2160" 45 "$python" -m tools.runtime --device cuda --model_sizes base \
            --precision "$precision" --resolution 3840x2160 --pyr_level 7 --nr_lvl_skipped 2 --no-memory \
            --repeats 5 --throughput_repeats 1 "${rife[@]}" --out_json "$out/runtime_${precision}_3840x2160.json"
    done
else
    small=(--resolution 128x96 --repeats 1 --warmup 0 --throughput_repeats 0 --matmul_size 256 --matmul_repeats 1)
    precisions=(fp32 bf16)
    if [ "$quick" = 1 ]; then
        small=(--resolution 64x64 --repeats 1 --warmup 0 --throughput_repeats 0 --matmul_size 128 --matmul_repeats 1)
        precisions=(fp32)
    fi
    for precision in "${precisions[@]}"; do
        step "runtime_${precision}" 600 "$python" -m tools.runtime --device cpu --model_sizes base --threads 2 \
            --precision "$precision" --no-memory "${small[@]}" "${rife[@]}" --out_json "$out/runtime_${precision}.json"
    done
fi

# ------------------------------------------------------------------------------------------- video engine
# core.engine on a synthetic clip made here (no footage on the machine): --multi 2, output frames/s of the whole
# engine (decode, model, encode overlapped; model loaded before the clock starts) against the bare Interpolator's
# on the same pairs (frames already on the device, same batch); CUDA: 1920x1080, bf16 and fp16, batch 4
cat >"$out/video_engine.py" <<'EOF'
import json, os, sys, time
import numpy as np
import torch

out, device, width, height, frames, batch = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
precisions = sys.argv[7].split(",")
import av
import cv2
from core import Interpolator
from core.engine import VideoJobOptions, convert_video

clip = os.path.join(out, "video_engine_clip.mp4")
rng = np.random.default_rng(0)
base = cv2.resize(rng.integers(0, 256, (height // 8, width // 8, 3)).astype(np.uint8), (width, height),
                  interpolation=cv2.INTER_CUBIC)
container = av.open(clip, "w")
stream = container.add_stream("libx264", rate=24)
stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
pictures = []
for i in range(frames):   # the texture pans 4 px a frame: real motion, no scene cut, no duplicate
    rgb = np.ascontiguousarray(np.roll(base, 4 * i, axis=1))
    pictures.append(rgb)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    frame.pts = i
    container.mux(stream.encode(frame))
container.mux(stream.encode(None))
container.close()

result = {"device": device, "width": width, "height": height, "input_frames": frames, "pairs": frames - 1,
          "batch": batch, "precisions": {}}
if device == "cuda":
    result["gpu"] = torch.cuda.get_device_name(0)
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
tensors = [torch.from_numpy(p).permute(2, 0, 1)[None].float().div(255) for p in pictures]
for precision in precisions:
    entry = result["precisions"][precision] = {}
    try:
        interpolator = Interpolator.from_checkpoint(device=device, precision=precision)
    except Exception as error:   # a precision this Interpolator does not offer
        entry["error"] = f"{type(error).__name__}: {error}"
        print(f"{precision}: {entry['error']}")
        continue
    on_device = [t.to(device) for t in tensors]
    pairs = list(range(frames - 1))
    for warm in (True, False):   # the first pass warms up (kernels, autotuning) for every batch shape
        start = time.perf_counter()
        for i in range(0, len(pairs), batch):
            chunk = pairs[i:i + batch]
            img0 = torch.cat([on_device[p] for p in chunk])
            img1 = torch.cat([on_device[p + 1] for p in chunk])
            interpolator.interpolate_tensors(img0, img1, [0.5])
        sync()
        model_s = time.perf_counter() - start
    target = os.path.join(out, f"video_engine_{precision}.mp4")
    options = VideoJobOptions(multi=2, batch=batch, scene_threshold=0, dup_threshold=0, overwrite=True)
    start = time.perf_counter()
    summary = convert_video(clip, target, options, interpolator)
    engine_s = time.perf_counter() - start
    with av.open(target) as check:
        decoded = sum(1 for _ in check.decode(check.streams.video[0]))
    model_fps, engine_fps = len(pairs) / model_s, summary.interpolated / engine_s
    entry.update({"model_s": model_s, "engine_s": engine_s, "interpolated": summary.interpolated,
                  "output_frames": summary.frames_out, "decoded_frames": decoded,
                  "model_interpolated_fps": model_fps, "engine_interpolated_fps": engine_fps,
                  "engine_output_fps": summary.frames_out / engine_s, "ratio": engine_fps / model_fps})
    print(f"{precision}: model {model_fps:.2f} frames/s, engine {engine_fps:.2f} interpolated "
          f"({entry['engine_output_fps']:.2f} output) frames/s, ratio {entry['ratio']:.3f}; "
          f"{decoded} frames decoded from the output")
    assert decoded == summary.frames_out == 2 * frames, (decoded, summary.frames_out)
    del interpolator, on_device
    if device == "cuda":
        torch.cuda.empty_cache()
json.dump(result, open(os.path.join(out, "video_engine.json"), "w"), indent=2)
if not any("ratio" in e for e in result["precisions"].values()):
    sys.exit("no precision ran")
EOF
if [ "$device" = cuda ]; then
    step video_engine 90 "$python" "$out/video_engine.py" "$out" cuda 1920 1080 24 4 bf16,fp16
elif [ "$quick" = 1 ]; then
    step video_engine 600 "$python" "$out/video_engine.py" "$out" cpu 64 48 4 2 fp32
else
    step video_engine 600 "$python" "$out/video_engine.py" "$out" cpu 128 96 6 2 fp32,bf16
fi

# ------------------------------------------------------------------------------------------------ summary
"$python" - "$out" "$device" "$quick" "$(( $(date +%s) - started ))" <<'EOF' 2>&1 | tee -a "$log"
import json, os, re, sys
import xml.etree.ElementTree as ET

out, device, quick, seconds = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])


def read_json(name):
    path = os.path.join(out, name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


summary = {"device": device, "quick": quick, "seconds": seconds, "environment": read_json("environment.json"),
           "steps": {}}
with open(os.path.join(out, "steps.tsv")) as f:
    for line in f:
        name, rc, step_seconds, command = line.rstrip("\n").split("\t", 3)
        skipped = rc == "budget"
        summary["steps"][name] = {"command": command, "exit_code": None if skipped else int(rc),
                                  "seconds": int(step_seconds or 0) / 1000, "passed": not skipped and rc == "0",
                                  "skipped_for_time": skipped}
steps = summary["steps"]

if "pytest_cuda" in steps:
    tests = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "skip_reasons": [], "failures": []}
    path = os.path.join(out, "pytest_cuda.xml")
    if os.path.isfile(path):
        for case in ET.parse(path).getroot().iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            if case.find("failure") is not None:
                tests["failed"] += 1
                tests["failures"].append(name)
            elif case.find("error") is not None:
                tests["errors"] += 1
                tests["failures"].append(name)
            elif case.find("skipped") is not None:
                tests["skipped"] += 1
                tests["skip_reasons"].append(f"{name}: {case.find('skipped').get('message')}")
            else:
                tests["passed"] += 1
    steps["pytest_cuda"]["tests"] = tests
    # on a GPU no CUDA test may skip: the one acceptable reason is that there is no CUDA device
    if device == "cuda" and (tests["skipped"] or not tests["passed"]):
        steps["pytest_cuda"]["passed"] = False

for name, entry in steps.items():
    if name.startswith("runtime") or name == "training_speed":
        result = read_json(f"{name}.json")
        if result is not None:
            entry["result"] = result
        elif entry["passed"]:
            entry["passed"] = False
            entry["error"] = "no JSON written"
        if result is not None and name.startswith("runtime"):
            base = result["sizes"]["base"]
            entry["latency_ms"] = base["latency_ms"]
            if "rife" in result:
                entry["rife_latency_ms"] = result["rife"]["latency_ms"]

if "video_engine" in steps:
    entry = steps["video_engine"]
    result = read_json("video_engine.json")
    if result is not None:
        entry["result"] = result
        entry["ratios"] = {p: e["ratio"] for p, e in result["precisions"].items() if "ratio" in e}
    elif entry["passed"]:
        entry["passed"] = False
        entry["error"] = "no JSON written"

if "train_torchrun" in steps:
    log_path = os.path.join(out, "train-log", "smoke", "runtime.log")
    losses = {}
    if os.path.isfile(log_path):
        with open(log_path) as f:
            losses = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"step (\d+)/\d+ \| loss (\S+)", f.read())}
    checkpoints = sorted(os.listdir(os.path.join(out, "train-log", "smoke", "checkpoints"))) \
        if os.path.isdir(os.path.join(out, "train-log", "smoke", "checkpoints")) else []
    entry = steps["train_torchrun"]
    entry.update({"losses": losses, "checkpoints": checkpoints})
    if entry["passed"] and (not losses or "last.pt" not in checkpoints):
        entry["passed"] = False
        entry["error"] = "no logged losses or no last.pt"

summary["passed"] = bool(steps) and all(e["passed"] for e in steps.values())
with open(os.path.join(out, "gpu_check.json"), "w") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")
print()
print(f"gpu_check ({device}{', quick' if quick else ''}): {seconds} s")
for name, e in steps.items():
    extra = ""
    if "tests" in e:
        t = e["tests"]
        extra = f" ({t['passed']} passed, {t['failed']} failed, {t['errors']} errors, {t['skipped']} skipped)"
    elif "latency_ms" in e:
        extra = f" (base {e['latency_ms']:.1f} ms" + (f", RIFE {e['rife_latency_ms']:.1f} ms" if "rife_latency_ms" in e else "") + ")"
    elif name == "video_engine" and "result" in e:
        extra = " (" + ", ".join(f"{p} {v['engine_output_fps']:.2f} output frames/s, {v['ratio']:.2f} of the model's"
                                 if "ratio" in v else f"{p} not run" for p, v in e["result"]["precisions"].items()) + ")"
    elif name == "training_speed" and "result" in e:
        extra = " (" + ", ".join(f"{m} {v['steps_per_s']:.2f} steps/s"
                                 + (f", peak {v['cuda_peak_mb']:.0f} MiB" if "cuda_peak_mb" in v else "")
                                 for m, v in e["result"]["modes"].items())
        if "loader" in e["result"]:
            extra += f"; loader {e['result']['loader']['samples_per_s']:.0f} samples/s"
        extra += ")"
    status = "skipped (time)" if e["skipped_for_time"] else ("ok" if e["passed"] else f"FAILED (exit code {e['exit_code']})")
    print(f"  {name:28s} {status}{extra}")
print(f"{'PASSED' if summary['passed'] else 'FAILED'}; {os.path.join(out, 'gpu_check.json')}")
sys.exit(0 if summary["passed"] else 1)
EOF
exit $?
