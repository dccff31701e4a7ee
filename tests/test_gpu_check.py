"""tools/gpu_check.sh in its CPU quick mode (the CUDA tests on the CPU with the Triton interpreter, tools.runtime with
a stand-in RIFE, tools.training_speed, a 1-process Gloo torchrun run of tools.train) and its JSON summary."""
import json
import math
import os
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "gpu_check.sh")

STAND_IN_IFNET = '''
import torch
import torch.nn as nn


class IFNet(nn.Module):
    """A stand-in with RIFE v4's interface (not RIFE): blends the two frames with a 1x1 convolution."""

    def __init__(self, device=None):
        super().__init__()
        self.blend = nn.Conv2d(6, 3, 1)

    def forward(self, x, timestep, scale_list):
        merged = torch.sigmoid(self.blend(x))
        return None, None, [merged]
'''


def run_check(out, *options):
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("OUT", None)
    return subprocess.run(["bash", SCRIPT, "--device", "cpu", "--out", str(out), *options], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)


def test_cpu_quick_mode_runs_every_step_and_writes_the_summary(tmp_path):
    rife = tmp_path / "rife"
    rife.mkdir()
    (rife / "ifnet.py").write_text(STAND_IN_IFNET)
    namespace = {}
    exec(STAND_IN_IFNET, namespace)
    torch.save({f"module.{k}": v for k, v in namespace["IFNet"]().state_dict().items()}, rife / "flownet.pkl")
    out = tmp_path / "out"
    done = run_check(out, "--quick", "--rife_dir", str(rife))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["passed"] and summary["device"] == "cpu" and summary["quick"]
    steps = summary["steps"]
    assert list(steps) == ["environment", "pytest_cuda", "training_speed", "train_torchrun", "runtime_fp32",
                           "video_engine"]
    assert all(step["passed"] and step["exit_code"] == 0 and step["seconds"] > 0 for step in steps.values())
    assert summary["environment"]["torch"] == torch.__version__
    assert summary["environment"]["triton_kernels_available"] is False      # no GPU, interpreter off there
    tests = steps["pytest_cuda"]["tests"]
    assert tests["passed"] >= 6 and tests["failed"] == tests["errors"] == tests["skipped"] == 0, tests
    runtime = steps["runtime_fp32"]
    assert runtime["latency_ms"] > 0 and runtime["rife_latency_ms"] > 0
    assert runtime["result"]["device"] == "cpu" and runtime["result"]["rife"]["folder"] == str(rife)
    speed = steps["training_speed"]["result"]
    assert speed["modes"]["fp32"]["steps_per_s"] > 0 and speed["loader"]["samples_per_s"] > 0
    train = steps["train_torchrun"]
    assert list(train["losses"]) == ["1"] and all(math.isfinite(v) for v in train["losses"].values())
    assert "last.pt" in train["checkpoints"]
    assert steps["video_engine"]["ratios"]["fp32"] > 0       # the engine ran end to end against the bare model
    log = (out / "gpu_check.log").read_text()
    assert "gloo all_reduce over 1 process(es): ok" in log and "PASSED" in log


def test_steps_past_the_budget_are_skipped_and_fail_the_check(tmp_path):
    out = tmp_path / "out"
    done = run_check(out, "--quick", "--budget", "0")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    assert not summary["passed"] and summary["steps"]
    assert all(step["skipped_for_time"] and not step["passed"] for step in summary["steps"].values())
