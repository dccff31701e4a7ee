"""tools.runtime: the size flag selects the model, FLOP counting, and a tiny end-to-end run; the allocator
setting the tools apply."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import core  # noqa: E402
from tools import runtime  # noqa: E402

TINY = ["--repeats", "1", "--warmup", "0", "--resolution", "64x64", "--throughput_repeats", "1",
        "--matmul_size", "128", "--matmul_repeats", "1", "--threads", "1"]


def test_conv_flop_counter_on_known_layers():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1))
    flops = runtime.count_conv_flops(model, lambda: model(torch.zeros(1, 3, 5, 5)))
    assert flops == 2 * (8 * 25 * 3 * 9) + 2 * (8 * 25 * 4 * 16)


def test_base_forward_flops_match_the_papers_count():
    model = core.build_model("base")
    x = torch.rand(1, 3, 128, 160)          # 1/16 of 640x512: every pyramid level scales exactly
    with torch.no_grad():
        flops = runtime.count_conv_flops(model, lambda: model(x, x, 0.5, 3, 0)) * 16
    assert flops / 1e9 == pytest.approx(197.16, abs=0.01)                 # 640x512, as the Interpolator pads
    assert flops * 480 / 512 / 1e9 == pytest.approx(185, rel=0.01)        # the bare 640x480 forward


def test_runtime_smoke_large(tmp_path, capsys):
    out = tmp_path / "runtime.json"
    runtime.main(["--model_sizes", "large", "--no-memory", "--out_json", str(out)] + TINY)
    printed, err = capsys.readouterr()
    assert "loaded" not in err                                             # no large checkpoint: random weights
    result = json.loads(out.read_text())
    entry = result["sizes"]["large"]
    assert list(result["sizes"]) == ["large"] and entry["params"] == 3_701_865
    assert result["threads"] == 1 and result["resolution"] == "64x64" and result["matmul_gflops"] > 0
    for key in ("latency_ms", "conv_gflop", "floor_ms", "floor_over_latency", "x8_reuse_fps",
                "x8_independent_fps", "x8_speedup"):
        assert entry[key] > 0, key
    assert entry["weights"] == "random"
    # x8 FLOP ratio = 7 (motion + synthesis) / (motion + 7 synthesis), the parts counted here on their own
    model, x = core.build_model("large"), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        levels = []
        motion = runtime.count_conv_flops(model, lambda: levels.extend(model.estimate_motion(x, x, 3, 0)))
        synthesis = runtime.count_conv_flops(model, lambda: model.synthesize(levels, 0.5))
    assert entry["x8_flop_ratio"] == pytest.approx(7 * (motion + synthesis) / (motion + 7 * synthesis), rel=1e-9)
    assert 1 < entry["x8_flop_ratio"] < 7
    # the large model splats 4 images per level and correlates once per level: both take some time, not all
    assert 0 < entry["splatting_share"] < 1 and 0 < entry["correlation_share"] < 1
    assert entry["splatting_share"] + entry["correlation_share"] < 1
    assert "torch threads: 1" in printed and "frames/s" in printed and "floor" in printed and "3,701,865" in printed


def test_runtime_peak_memory_in_a_fresh_process(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runtime, "available_memory_mb", lambda: 8000.0)
    out = tmp_path / "runtime.json"
    runtime.main(["--model_sizes", "base", "--memory", "--memory_resolutions", "4096x2160", "64x64",
                  "--out_json", str(out)] + TINY + ["--throughput_repeats", "0"])
    memory = json.loads(out.read_text())["sizes"]["base"]["memory"]
    small = memory["64x64"]
    assert "error" not in small, small
    assert small["peak_rss_mb"] >= small["baseline_rss_mb"] > 0 and small["pyr_level"] == 3
    assert memory["4096x2160"]["error"].startswith("skipped: would need about")   # ~16 GB > 8 GB
    printed = capsys.readouterr()
    assert "peak RSS MB" in printed.out
    assert f"loaded base weights from {runtime.SHIPPED_CHECKPOINT}" in printed.err   # as every other tool says


def test_peak_prediction_scales_with_pixels():
    report = {"resolution": "1920x1080", "baseline_rss_mb": 600.0, "peak_rss_mb": 4200.0}
    # whole-frame synthesis at 4K (strips off): 4x the pixels of the 1080p run, 4x its memory above baseline
    assert runtime.predicted_peak_mb("base", 3840, 2160, report, low_memory=False) == pytest.approx(600 + 4 * 3600)
    # in strips (the default at 4K) a whole-frame report does not apply: the strips prior of 800 bytes per pixel
    assert runtime.predicted_peak_mb("base", 3840, 2160, report) == pytest.approx(700 + 3840 * 2160 * 800 / 2 ** 20)
    strips = {"resolution": "3840x2160", "baseline_rss_mb": 600.0, "peak_rss_mb": 7000.0}
    assert runtime.predicted_peak_mb("base", 7680, 2160, strips) == pytest.approx(600 + 2 * 6400)
    assert runtime.predicted_peak_mb("LARGE", 3840, 2160) > 1.9 * runtime.predicted_peak_mb("base", 3840, 2160)


def test_runtime_compile_times_both_and_leaves_the_measured_model_eager():
    from core.cli import interpolator_options

    args = runtime.build_parser().parse_args(["--compile", "--scale", "0.5"])
    assert args.time_compiled and "compile" not in interpolator_options(args)
    assert interpolator_options(args)["scale"] == 0.5


def test_model_file_needs_a_single_size(capsys):
    with pytest.raises(SystemExit) as exit_info:
        runtime.main(["--model_file", "x.pkl", "--no-memory"] + TINY)
    assert exit_info.value.code == 2 and "exactly one" in capsys.readouterr().err


def test_training_speed_prints_every_mode(capsys):
    from tools import training_speed
    training_speed.main(["--batch_size", "1", "--crop", "32", "--warmup", "0", "--repeats", "1", "--device", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0].strip() for line in lines[1:]] == list(training_speed.DEFAULT_MODES)
    assert lines[1].rstrip().endswith("1.00x")
    with pytest.raises(SystemExit):
        training_speed.main(["--crop", "33"])


FAULTS_SCRIPT = """
import resource, sys, torch
from core.device import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = []
for _ in range(20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(64 * 2 ** 20 // 4)          # 64 MiB, freed at once
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[-3:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_keep_freed_memory_reuses_large_blocks_instead_of_faulting_them_in_again():
    """A 64 MiB tensor is 16,384 pages: by default each new one faults every page in again; once freed memory
    is kept, repeated allocations of the same size settle on touched pages (the heap grows for the first few)."""
    def faults(mode):
        result = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, mode], capture_output=True, text=True,
                                cwd=ROOT, env={**os.environ, "UPR_KEEP_FREED_MEMORY": "1"}, check=True)
        return int(result.stdout.split()[-1])
    assert faults("default") > 3 * 15000
    assert faults("keep") < 1000
