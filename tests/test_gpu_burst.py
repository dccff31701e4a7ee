"""The GPU training burst (tools/gpu_train.sh, tools.gpu_burst) in its quick CPU mode, on a small pack."""
import csv
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import core
from core.data.train_pack import make_pack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_clip_frames(folder, count, seed):
    """PNG frames of a textured square moving over a textured background (96 x 128)."""
    rng = np.random.default_rng(seed)
    background = cv2.resize(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), (128, 96))
    square = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (32, 32))
    os.makedirs(folder)
    for i in range(count):
        frame = np.roll(background, i, axis=1).copy()
        x = 10 + (3 * i) % 80
        frame[30:62, x:x + 32] = square
        cv2.imwrite(os.path.join(folder, f"{i:03d}.png"), frame)


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    base = tmp_path_factory.mktemp("burst")
    sources = []
    for k, (name, count) in enumerate((("a", 12), ("b", 14), ("c", 30), ("held", 12))):
        write_clip_frames(base / "clips" / name, count, k)
        sources.append(str(base / "clips" / name))
    make_pack(sources, str(base / "pack"), progress=False)
    return base


def run_burst(base, *extra):
    command = ["bash", os.path.join(ROOT, "tools", "gpu_train.sh"), "--device", "cpu", "--quick", "--pack",
               str(base / "pack"), "--val", "held.mp4", "--work", str(base / "work"), *extra]
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_quick_burst_writes_weights_state_table_and_log_and_a_second_call_continues(pack):
    out = pack / "out"
    result = run_burst(pack, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["best.pkl", "burst.json", "last.pt", "train.log", "validation.tsv"]
    assert all(os.path.getsize(out / name) < 16 * 2 ** 20 for name in os.listdir(out))
    summary = json.loads((out / "burst.json").read_text())
    rows = list(csv.DictReader(open(out / "validation.tsv"), delimiter="\t"))
    # the starting weights are validated first (the score to beat), then the end of the run
    assert [int(r["step"]) for r in rows] == [0, 2, 3]
    assert summary["start_psnr"] == float(rows[0]["psnr"]) and summary["last_step"] == 3
    assert summary["best_psnr"] == max(float(r["psnr"]) for r in rows)
    assert summary["improved"] == (summary["best_psnr"] > summary["start_psnr"])
    # the pack's held-out clip validates, the two shortest other clips train (not the longest, c.mp4)
    log = (out / "train.log").read_text()
    assert "held.mp4" not in log.split("--val_video_paths")[0] and "c.mp4" not in log
    assert core.load_model(out / "best.pkl").model_size == "base"
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 3
    assert all(v["exp_avg"].dtype == torch.bfloat16 for v in state["optimizer"]["state"].values())
    # a second call continues from last.pt (steps 4 .. 3 + 3) and keeps the best score so far
    again = pack / "again"
    result = run_burst(pack, "--out", str(again), "--resume_from", str(out / "last.pt"))
    assert result.returncode == 0, result.stderr[-3000:]
    log = (again / "train.log").read_text()
    assert "resumed from" in log and "step 0:" not in log       # the start is not validated again
    second = json.loads((again / "burst.json").read_text())
    assert second["last_step"] == 6 and abs(second["start_psnr"] - summary["best_psnr"]) < 1e-3
    assert second["best_psnr"] >= summary["best_psnr"] - 1e-3
    assert [int(r["step"]) for r in csv.DictReader(open(again / "validation.tsv"), delimiter="\t")] == [4, 6]


def test_missing_held_out_clip_or_pack_is_one_line(pack, tmp_path):
    result = run_burst(pack, "--out", str(tmp_path / "o"), "--val", "nothere.mp4")
    assert result.returncode == 2 and "nothere.mp4 not in the pack" in result.stderr
    command = ["bash", os.path.join(ROOT, "tools", "gpu_train.sh"), "--quick", "--pack", str(tmp_path / "none"),
               "--videos", str(tmp_path / "novideos"), "--out", str(tmp_path / "o")]
    result = subprocess.run(command, cwd=ROOT, env=dict(os.environ, PYTHON=sys.executable), capture_output=True,
                            text=True)
    assert result.returncode == 2 and "no training pack" in result.stderr
