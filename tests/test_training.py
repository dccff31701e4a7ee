"""The training tool end to end on a tiny Vimeo90K-layout fixture: 2-process Gloo DDP through torchrun and through
the original README's torch.distributed.launch command, two "nodes" (torchrun --nnodes 2, c10d rendezvous on
localhost) with staged resume, exact resume (staged with --stop_at_step and after a real SIGINT), fine-tuning from
--model_file, config errors and the original's flags, and that training on a fixed batch lowers the loss.

Runs are tiny (64x64 frames, 32x32 crops, pyr_level 2, a handful of steps) and run in subprocesses, so the
tool's signal handlers, process groups and TensorBoard writers never touch the pytest process.
"""
import glob
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import skimage.data
import torch

import core
from core.checkpoint import MODEL_OPTIONS_KEY, read_state_dict
from core.losses import frame_loss
from core.schedule import learning_rate
from tools.greedy_soup import greedy_soup
from tools.train import build_parser, parse_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300


def make_vimeo(root, n_train=6, n_test=2, size=64):
    """Vimeo90K triplet layout: root/sequences/0000s/000t/im{1,2,3}.png listed in tri_{train,test}list.txt.
    Each triplet is three crops of a photo whose window moves by a few pixels per frame (real content, real
    motion), so a model can learn something."""
    image = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    keys = []
    for n in range(n_train + n_test):
        key = f"{n // 4 + 1:05d}/{n % 4 + 1:04d}"
        y, x, dy, dx = 30 + 17 * n, 20 + 13 * n, (n % 3) - 1, 2 + n % 2
        folder = os.path.join(root, "sequences", key)
        os.makedirs(folder)
        for k in range(3):
            crop = image[y + 2 * k * dy: y + 2 * k * dy + size, x + 2 * k * dx: x + 2 * k * dx + size]
            assert cv2.imwrite(os.path.join(folder, f"im{k + 1}.png"), np.ascontiguousarray(crop[:, :, ::-1]))
        keys.append(key)
    with open(os.path.join(root, "tri_trainlist.txt"), "w") as f:
        f.write("\n".join(keys[:n_train]) + "\n")
    with open(os.path.join(root, "tri_testlist.txt"), "w") as f:
        f.write("\n".join(keys[n_train:]) + "\n")
    return root


@pytest.fixture(scope="module")
def vimeo(tmp_path_factory):
    return make_vimeo(str(tmp_path_factory.mktemp("data") / "vimeo_triplet"))


def subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def tiny_args(data_root, log_root, exp_name, **overrides):
    options = dict(data_root=data_root, train_log_root=log_root, exp_name=exp_name, pyr_level=2, batch_size=2,
                   crop_h=32, crop_w=32, steps=8, warmup_steps=2, nr_data_worker=0, log_interval=1,
                   image_interval=2, save_interval=100, threads=1, seed=5)
    options.update(overrides)
    args = []
    for key, value in options.items():
        if value is True:
            args.append(f"--{key}")
        elif value is not None and value is not False:
            args += [f"--{key}", str(value)]
    return args


def run_train(args, cwd, check=True):
    result = subprocess.run([sys.executable, "-m", "tools.train", *args], cwd=cwd, env=subprocess_env(),
                            capture_output=True, text=True, timeout=TIMEOUT)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def load(path):
    """A torch file's dict without the model-options record that weights files carry (core.checkpoint)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state.pop(MODEL_OPTIONS_KEY, None)
    return state


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}: max abs difference " \
                          f"{max((a[k].float() - b[k].float()).abs().max().item() for k in different):.3g}"


def logged_losses(log_path):
    with open(log_path) as f:
        return {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"step (\d+)/\d+ \| loss (\S+)", f.read())}


def checkpoint_dir(log_root, exp_name):
    return os.path.join(log_root, exp_name, "checkpoints")


# ------------------------------------------------------------------------------------------ torchrun DDP

DDP_DRIVER = '''
"""Runs tools.train.main() and then saves this rank's final weights (the model the tool built)."""
import os, sys
import torch
import tools.train as train

built = []
build_model = train.build_model
train.build_model = lambda *args, **kwargs: built.append(build_model(*args, **kwargs)) or built[-1]
train.main(sys.argv[1:])
torch.save(built[0].state_dict(), os.path.join(sys.argv[sys.argv.index("--train_log_root") + 1],
                                               "rank%s.pt" % os.environ["RANK"]))
'''


def test_two_process_gloo_run(vimeo, tmp_path):
    log_root = str(tmp_path / "log")
    driver = tmp_path / "ddp_driver.py"
    driver.write_text(DDP_DRIVER)
    args = tiny_args(vimeo, log_root, "ddp", batch_size=1, steps=4, save_interval=2)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(driver), *args]
    result = subprocess.run(command, cwd=str(tmp_path), env=subprocess_env(), capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "world size 2, batch 1 per process (2 total)" in result.stdout
    assert "6 training samples (3 steps per epoch)" in result.stdout

    # both ranks end with identical parameters (they started from different random initialisations: DDP
    # broadcasts rank 0's), equal to the saved checkpoint and different from the initialisation
    rank0, rank1 = load(os.path.join(log_root, "rank0.pt")), load(os.path.join(log_root, "rank1.pt"))
    assert_same_state(rank0, rank1)
    ckpt = checkpoint_dir(log_root, "ddp")
    assert_same_state(rank0, load(os.path.join(ckpt, "last.pkl")))
    torch.manual_seed(5)
    initial = core.build_model("base", pyr_level=2).state_dict()
    assert any(not torch.equal(initial[k], rank0[k]) for k in initial)

    assert sorted(os.listdir(ckpt)) == ["best.pkl", "last.pkl", "last.pt"]
    for name in ("best.pkl", "last.pkl", "last.pt"):    # the weights carry their model: loadable from the file alone
        written = core.load_model(os.path.join(ckpt, name), pyr_level=2)
        assert (written.model_size, written.options) == ("base", core.MODEL_SIZES["base"])
    state = load(os.path.join(ckpt, "last.pt"))
    assert state["step"] == 4 and state["args"]["batch_size"] == 1
    assert_same_state(state["model"], rank0)
    losses = logged_losses(os.path.join(log_root, "ddp", "runtime.log"))
    assert sorted(losses) == [1, 2, 3, 4] and all(math.isfinite(v) for v in losses.values())

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = glob.glob(os.path.join(log_root, "ddp", "tensorboard", "events.out.tfevents.*"))
    assert len(events) == 1, events          # rank 0 only
    accumulator = EventAccumulator(events[0], size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    assert {"train/loss", "train/lr", "train/grad_norm", "train/loss_charbonnier", "train/loss_census", "val/psnr",
            "val/ssim"} <= set(tags["scalars"])
    assert all(0 < e.value < math.inf for e in accumulator.Scalars("train/grad_norm"))
    assert {"train/images", "val/images"} <= set(tags["images"])
    loss = accumulator.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3, 4] and all(math.isfinite(e.value) for e in loss)
    assert [e.value for e in accumulator.Scalars("train/lr")] == pytest.approx(
        [learning_rate(s, 4, 2e-4, 2e-5, 2) for s in range(4)], rel=1e-6)
    psnr = accumulator.Scalars("val/psnr")
    assert [e.step for e in psnr] == [2, 4] and all(5 < e.value < 60 for e in psnr)
    assert all(0 < e.value <= 1 for e in accumulator.Scalars("val/ssim"))
    # image sheets: 4 frames wide, 2 rows (frames over flows); training crops 32, validation full 64x64
    train_image, val_image = accumulator.Images("train/images")[0], accumulator.Images("val/images")[0]
    assert (train_image.width, train_image.height) == (4 * 32, 2 * 32)
    assert (val_image.width, val_image.height) == (4 * 64, 2 * 64)
    assert [e.step for e in accumulator.Images("train/images")] == [1, 2, 4]


# ------------------------------------------------------------------------------------------------ resume


@pytest.mark.parametrize("amp, steps, batch_size", [("none", 8, 2), ("fp16", 4, 1)])
def test_staged_run_equals_straight_run(vimeo, tmp_path, amp, steps, batch_size):
    """N steps straight == N/2 steps (--stop_at_step, mid-epoch) + --resume for N/2 more, bit for bit.
    With fp16 the loss scaler's state must be restored too."""
    log_root = str(tmp_path / "log")
    half = steps // 2
    options = dict(amp=amp, steps=steps, batch_size=batch_size)
    run_train(tiny_args(vimeo, log_root, "straight", **options), tmp_path)
    first = run_train(tiny_args(vimeo, log_root, "staged", stop_at_step=half, **options), tmp_path)
    assert f"step {half}: --stop_at_step {half}; saving" in first.stdout
    staged = checkpoint_dir(log_root, "staged")
    assert load(os.path.join(staged, "last.pt"))["step"] == half
    assert not os.path.exists(os.path.join(staged, "best.pkl"))      # stopping skips validation
    second = run_train(tiny_args(vimeo, log_root, "staged", resume=True, **options), tmp_path)
    assert f"at step {half}" in second.stdout

    straight_state = load(os.path.join(checkpoint_dir(log_root, "straight"), "last.pt"))
    staged_state = load(os.path.join(staged, "last.pt"))
    assert straight_state["step"] == staged_state["step"] == steps
    assert_same_state(straight_state["model"], staged_state["model"])
    for a, b in zip(straight_state["optimizer"]["state"].values(), staged_state["optimizer"]["state"].values()):
        assert_same_state(a, b)
    assert straight_state["scaler"] == staged_state["scaler"]
    if amp == "fp16":   # the scaler moved off its initial state (it grew or backed off), and that was carried
        scaler = staged_state["scaler"]
        assert scaler["scale"] > 0 and (scaler["scale"], scaler["_growth_tracker"]) != (65536.0, 0)
    # the same losses, step by step
    straight_losses = logged_losses(os.path.join(log_root, "straight", "runtime.log"))
    staged_losses = logged_losses(os.path.join(log_root, "staged", "runtime.log"))
    assert sorted(staged_losses) == list(range(1, steps + 1)) and staged_losses == straight_losses
    assert straight_state["best_psnr"] == staged_state["best_psnr"] > 0


def wait_for_step(log_path, minimum, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "training ended before it was signalled"
        if os.path.exists(log_path):
            steps = [int(s) for s in re.findall(r"step (\d+)/", open(log_path).read())]
            if steps and max(steps) >= minimum:
                return max(steps)
        time.sleep(0.05)
    raise AssertionError(f"no step {minimum} in {log_path} after {timeout} s")


def test_sigint_saves_and_resume_continues_exactly(vimeo, tmp_path):
    """Ctrl-C (SIGINT to the process group, data worker included) saves last.pt atomically and exits 0; the
    resumed run then matches a run that never stopped."""
    log_root = str(tmp_path / "log")
    common = dict(steps=1000, nr_data_worker=1, image_interval=1000)
    output = open(tmp_path / "signalled.out", "w")
    process = subprocess.Popen([sys.executable, "-m", "tools.train",
                                *tiny_args(vimeo, log_root, "signalled", **common)],
                               cwd=str(tmp_path), env=subprocess_env(), stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        wait_for_step(os.path.join(log_root, "signalled", "runtime.log"), 2, process)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=120) == 0, open(tmp_path / "signalled.out").read()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output.close()
    text = open(tmp_path / "signalled.out").read()
    ckpt = checkpoint_dir(log_root, "signalled")
    assert sorted(os.listdir(ckpt)) == ["last.pkl", "last.pt"]            # no .tmp-* left, no validation
    stopped = load(os.path.join(ckpt, "last.pt"))["step"]
    assert 2 <= stopped < 1000
    assert f"step {stopped}: signal {int(signal.SIGINT)}; saving" in text
    assert f"finished at step {stopped}" in text and "Traceback" not in text

    target = stopped + 2
    run_train(tiny_args(vimeo, log_root, "signalled", resume=True, stop_at_step=target, **common), tmp_path)
    run_train(tiny_args(vimeo, log_root, "straight", stop_at_step=target, **common), tmp_path)
    resumed = load(os.path.join(ckpt, "last.pt"))
    straight = load(os.path.join(checkpoint_dir(log_root, "straight"), "last.pt"))
    assert resumed["step"] == straight["step"] == target
    assert_same_state(resumed["model"], straight["model"])


def test_weight_average_follows_the_raw_weights_and_resumes_exactly(vimeo, tmp_path):
    """--ema_decay d: after step 1 the average is the weights w1; after step 2 it is d w1 + (1 - d) w2. last.pkl
    holds it, validation scores it and the raw weights, best.pkl keeps the higher-scoring of the two, and a staged
    run carries the average exactly."""
    log_root = str(tmp_path / "log")
    options = dict(steps=2, ema_decay=0.25)
    run_train(tiny_args(vimeo, log_root, "averaged", stop_at_step=1, **options), tmp_path)
    ckpt = checkpoint_dir(log_root, "averaged")
    w1 = load(os.path.join(ckpt, "last.pt"))["model"]
    assert_same_state(load(os.path.join(ckpt, "last.pkl")), w1)
    second = run_train(tiny_args(vimeo, log_root, "averaged", resume=True, **options), tmp_path)
    w2 = load(os.path.join(ckpt, "last.pt"))["model"]
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)
    average = load(os.path.join(ckpt, "last.pkl"))
    for key in w1:
        torch.testing.assert_close(average[key], 0.25 * w1[key] + 0.75 * w2[key], rtol=1e-6, atol=1e-7)
    # the logged score is the average's; the raw weights' score is logged beside it; best.pkl is the higher one
    logged = re.search(r"step 2: validation PSNR (\S+) dB, SSIM \S+ \(average of weights; raw weights (\S+) dB",
                       second.stdout)
    assert logged, second.stdout[-2000:]
    average_psnr, raw_psnr = float(logged.group(1)), float(logged.group(2))
    assert average_psnr != raw_psnr
    assert_same_state(load(os.path.join(ckpt, "best.pkl")), average if average_psnr > raw_psnr else w2)
    assert ("new best (raw weights)" in second.stdout) == (raw_psnr > average_psnr)
    check = run_train(tiny_args(vimeo, str(tmp_path / "unused"), "check", validate_only=True,
                                model_file=os.path.join(ckpt, "best.pkl")), tmp_path)
    assert f"validation PSNR {max(average_psnr, raw_psnr):.3f} dB" in check.stdout
    # the same two steps without a stop: same weights and the same average
    run_train(tiny_args(vimeo, log_root, "straight", **options), tmp_path)
    straight = load(os.path.join(checkpoint_dir(log_root, "straight"), "last.pt"))
    staged = load(os.path.join(ckpt, "last.pt"))
    assert_same_state(straight["model"], staged["model"])
    assert_same_state(straight["ema"], staged["ema"])
    bad = run_train(tiny_args(vimeo, log_root, "bad", ema_decay=1.5), tmp_path, check=False)
    assert bad.returncode != 0 and "--ema_decay must lie in (0, 1)" in bad.stderr


def test_resume_without_checkpoint_is_a_clear_error(vimeo, tmp_path):
    result = run_train(tiny_args(vimeo, str(tmp_path / "log"), "none", resume=True), tmp_path, check=False)
    assert result.returncode != 0
    assert "--resume but no checkpoint at" in result.stderr and "last.pt" in result.stderr


# ------------------------------------------------------------------------------------------ fine-tuning


def test_model_file_starts_from_given_weights(vimeo, tmp_path):
    torch.manual_seed(99)
    start = core.build_model("base").state_dict()
    start_path = tmp_path / "start.pkl"
    core.save_weights(start, start_path)
    log_root = str(tmp_path / "log")
    # a learning rate of 1e-12 keeps the weights at their start values, up to float rounding
    result = run_train(tiny_args(vimeo, log_root, "finetune", model_file=start_path, steps=2, init_lr=1e-12,
                                 min_lr=1e-12), tmp_path)
    assert f"initialised from {start_path}" in result.stdout
    final = load(os.path.join(checkpoint_dir(log_root, "finetune"), "last.pkl"))
    assert final.keys() == start.keys()
    assert max((final[k] - start[k]).abs().max().item() for k in start) < 1e-6


def test_time_limit_validates_saves_and_stops_and_validate_first_scores_the_start(vimeo, tmp_path):
    """--max_minutes: a time limit that ends the run at the next step, which is validated and saved (unlike a
    signal); --validate_first: the starting weights are validated at step 0 and are the score to beat."""
    log_root = str(tmp_path / "log")
    result = run_train(tiny_args(vimeo, log_root, "timed", steps=50, max_minutes=0.0001, validate_first=True),
                       tmp_path)
    validated = [int(step) for step in re.findall(r"step (\d+): validation PSNR", result.stdout)]
    assert validated == [0, 1], result.stdout[-2000:]
    assert "step 1: --max_minutes 0.0001; saving" in result.stdout
    assert load(os.path.join(checkpoint_dir(log_root, "timed"), "last.pt"))["step"] == 1
    assert os.path.isfile(os.path.join(checkpoint_dir(log_root, "timed"), "best.pkl"))


def test_validation_every_few_minutes(vimeo, tmp_path):
    result = run_train(tiny_args(vimeo, str(tmp_path / "log"), "every", steps=3, val_minutes=0.0001), tmp_path)
    assert [int(s) for s in re.findall(r"step (\d+): validation PSNR", result.stdout)] == [1, 2, 3]


def test_validate_only_reproduces_the_logged_validation_and_writes_nothing(vimeo, tmp_path):
    log_root = str(tmp_path / "log")
    result = run_train(tiny_args(vimeo, log_root, "scored", steps=4), tmp_path)
    logged = [float(v) for v in re.findall(r"validation PSNR (\S+) dB", result.stdout)]
    assert logged
    best = os.path.join(checkpoint_dir(log_root, "scored"), "best.pkl")
    check = run_train(tiny_args(vimeo, str(tmp_path / "unused"), "check", model_file=best, validate_only=True),
                      tmp_path)
    assert f"{best}: validation PSNR {max(logged):.3f} dB" in check.stdout
    assert not os.path.exists(tmp_path / "unused")
    missing = run_train(tiny_args(vimeo, log_root, "check", validate_only=True), tmp_path, check=False)
    assert missing.returncode != 0 and "--validate_only needs --model_file" in missing.stderr
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(b"not a checkpoint")
    bad = run_train(tiny_args(vimeo, log_root, "check", model_file=corrupt, validate_only=True), tmp_path, check=False)
    assert bad.returncode != 0 and "error: --model_file: cannot read checkpoint" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_greedy_soup_keeps_only_what_raises_the_score():
    """Scalar "models" w with score -|mean - 2|: start 0 (-2); + 4 -> mean 2 (0), kept; + 10 -> mean 4.67, dropped;
    + 1 -> mean 1.67 (-0.33), dropped; + 2 -> mean 2 again (0, not higher), dropped."""
    candidates = [{"w": torch.tensor([float(v)])} for v in (0, 4, 10, 1, 2)]
    kept, best = greedy_soup(candidates, lambda state: -abs(state["w"].item() - 2))
    assert kept == [0, 1] and best == 0


def test_greedy_soup_sorted_tries_the_best_alone_first():
    """Score -|mean - 2.5| of w = 0, 3, 10, 2, 1. Alone: -2.5, -0.5, -7.5, -0.5, -1.5, so sorted (stable) the trials
    go 1, 3, 4, 0, 2: start 3 (-0.5); + 2 -> mean 2.5 (0), kept; + 1 -> 2, + 0 -> 1.67, + 10 -> 5: dropped. In the
    given order: start 0 (-2.5); + 3 -> 1.5 (-1), kept; + 10 -> 4.33, dropped; + 2 -> 1.67 (-0.83), kept; + 1 -> 1.5,
    dropped."""
    candidates = [{"w": torch.tensor([float(v)])} for v in (0, 3, 10, 2, 1)]
    score = lambda state: -abs(state["w"].item() - 2.5)
    kept, best = greedy_soup(candidates, score, sort=True)
    assert kept == [1, 3] and best == 0
    kept, best = greedy_soup(candidates, score)
    assert kept == [0, 1, 3] and best == pytest.approx(-5 / 6)


def test_validated_weights_and_greedy_soup_tool(vimeo, tmp_path):
    """--keep_validated_weights keeps the raw weights of each validated step; tools.greedy_soup scores each mean
    exactly as --validate_only does, and writes the mean of the kept checkpoints."""
    log_root = str(tmp_path / "log")
    run_train(tiny_args(vimeo, log_root, "kept", steps=4, save_interval=2, keep_validated_weights=True), tmp_path)
    ckpt = checkpoint_dir(log_root, "kept")
    steps = [os.path.join(ckpt, f"step_00000{k}.pkl") for k in (2, 4)]
    assert sorted(glob.glob(os.path.join(ckpt, "step_*.pkl"))) == steps
    assert_same_state(load(steps[1]), load(os.path.join(ckpt, "last.pt"))["model"])
    train_options = tiny_args(vimeo, str(tmp_path / "unused"), "check")
    out = tmp_path / "soup.safetensors"
    result = subprocess.run([sys.executable, "-m", "tools.greedy_soup", steps[1], steps[0], "--out", str(out), "--",
                             *train_options], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    start = float(re.search(r"start with 0: (\S+) dB", result.stdout).group(1))
    trial = float(re.search(r"\+ 1: (\S+) dB, (kept|dropped)", result.stdout).group(1))
    kept = "kept" in re.search(r"\+ 1: \S+ dB, (kept|dropped)", result.stdout).group(1)
    assert kept == (trial > start)
    mean = core.average_weights(steps)
    core.save_weights(mean, tmp_path / "mean.pkl")
    for path, expected in ((steps[1], start), (tmp_path / "mean.pkl", trial)):
        check = run_train([*train_options, "--validate_only", "--model_file", str(path)], tmp_path)
        assert f"validation PSNR {expected:.3f} dB" in check.stdout
    assert_same_state(read_state_dict(out), mean if kept else load(steps[1]))
    one = subprocess.run([sys.executable, "-m", "tools.greedy_soup", steps[0], "--out", str(out), "--",
                          *train_options], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True)
    assert one.returncode == 2 and "give at least two checkpoints" in one.stderr


# -------------------------------------------------------------------------------------------- options


def test_config_file_values_and_command_line_precedence(tmp_path):
    config = tmp_path / "tiny.py"
    config.write_text("steps = 10\ncrop_h = 64\nvideo_paths = ['a', 'b']\n_helper = 3\n")
    args = parse_args(["--config", str(config), "--steps", "20"])
    assert (args.steps, args.crop_h, args.video_paths, args.crop_w) == (20, 64, ["a", "b"], 256)


def test_unknown_config_key_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "typo.py"
    config.write_text("steps = 10\nbatch_sise = 4\n")
    with pytest.raises(SystemExit) as error:
        parse_args(["--config", str(config)])
    assert error.value.code == 2
    message = capsys.readouterr().err
    assert f"{config}: unknown option(s) batch_sise" in message
    with pytest.raises(SystemExit):
        parse_args(["--config", str(tmp_path / "missing.py")])
    assert "config file not found" in capsys.readouterr().err


@pytest.mark.parametrize("line, message", [("amp = 'bf'", "amp = 'bf' is not one of none, bf16, fp16"),
                                           ("dataset = 'vimeo'", "dataset = 'vimeo' is not one of vimeo90k_triplet")])
def test_config_value_outside_choices_is_a_clear_error(tmp_path, capsys, line, message):
    # argparse only checks choices given on the command line; without this a typo in a config could be
    # ignored (amp) or fail much later with an unrelated error (dataset)
    config = tmp_path / "bad_value.py"
    config.write_text(line + "\n")
    with pytest.raises(SystemExit) as error:
        parse_args(["--config", str(config)])
    assert error.value.code == 2 and message in capsys.readouterr().err
    assert parse_args(["--config", str(config), "--amp", "none", "--dataset", "synthetic"]).amp == "none"


@pytest.mark.parametrize("config", sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))))
def test_shipped_configs_parse(config):
    args = parse_args(["--config", config])
    assert args.steps > 0 and args.model_size in core.MODEL_SIZES


def test_config_names_are_unique_ignoring_case_and_the_old_large_name_still_works():
    names = [name.lower() for name in os.listdir(os.path.join(REPO, "configs"))]
    assert len(names) == len(set(names))
    for name, size in (("upr_llarge.py", "LARGE"), ("upr_LARGE.py", "LARGE"), ("upr_large.py", "large")):
        assert parse_args(["--config", os.path.join(REPO, "configs", name)]).model_size == size


def test_help_documents_staged_runs():
    text = build_parser().format_help()
    assert "--stop_at_step" in text and "staged runs" in text


# ---------------------------------------------------------------------------------------------- learning


@pytest.fixture
def one_thread():
    # one intra-op thread: much faster than 2 on a busy 2-core machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_on_a_fixed_batch_reduces_the_loss(one_thread):
    """Overfit one triplet with the tool's optimiser settings (AdamW, init_lr, weight decay, loss)."""
    defaults = build_parser().parse_args([])
    torch.manual_seed(0)
    image = cv2.resize(skimage.data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    crop = lambda k: torch.from_numpy(image[20 + k:52 + k, 30 + 2 * k:62 + 2 * k].copy()).permute(2, 0, 1)[None]
    img0, gt, img1 = (crop(k).float() / 255 for k in (0, 2, 4))
    model = core.build_model("base", pyr_level=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=defaults.init_lr, weight_decay=defaults.weight_decay)
    losses = []
    for _ in range(40):
        prediction, _, _ = model(img0, img1, torch.tensor([0.5]))
        loss, _ = frame_loss(prediction, gt, defaults.loss_type)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.6 * losses[0], losses


def test_training_step_is_the_inline_step(one_thread):
    """core.training.TrainingStep runs exactly tools.train's step as it was written inline: fp16 autocast with the
    loss scaler, the flow weight's decay, flow and matching losses, clipping, AdamW and the weight average give the
    same loss, gradient norm, weights and average, bit for bit; the norm is returned with clipping off too."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    from core.losses import flow_supervision, matching
    from core.training import TrainingStep
    from tools.training_speed import synthetic_batch
    batch = synthetic_batch(2, 32, seed=3)
    options = dict(loss_type="charbonnier+census", flow_loss_weight=0.2, flow_loss_decay_steps=4,
                   matching_loss_weight=0.1, grad_clip=0.05, amp="fp16", ema_decay=0.5)
    torch.manual_seed(1)
    model = core.build_model("base", pyr_level=2)
    reference = core.build_model("base", pyr_level=2)
    reference.load_state_dict(model.state_dict())
    trainer = TrainingStep(model, torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4), **options)
    optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-3, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    ema = AveragedModel(reference, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    for step in range(3):
        result = trainer(batch, step, lr=1e-3 * (step + 1))
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * (step + 1)
        with torch.autocast("cpu", dtype=torch.float16):
            prediction, _, extra = reference(batch["img0"], batch["img1"], batch["time"])
        loss, terms = frame_loss(prediction.float(), batch["gt"])
        flow = flow_supervision(extra["bi_flows"], batch["flow"], batch["flow_valid"])
        loss = loss + 0.2 * max(0.0, 1 - step / 4) * flow
        loss = loss + 0.1 * matching(*extra["features"], batch["flow"], batch["flow_valid"])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.05)
        scaler.step(optimizer)
        scaler.update()
        ema.update_parameters(reference)
        assert torch.equal(result.loss, loss) and torch.equal(result.grad_norm, grad_norm)
        assert set(result.terms) == {"charbonnier", "census", "flow", "matching"}
        assert torch.equal(result.terms["flow"], flow) and result.prediction.shape == (2, 3, 32, 32)
    assert_same_state(model.state_dict(), reference.state_dict())
    assert_same_state(trainer.ema.state_dict(), ema.state_dict())
    assert trainer.scaler.state_dict() == scaler.state_dict()
    unclipped = TrainingStep(model, torch.optim.AdamW(model.parameters()))(batch, 0)
    assert 0 < unclipped.grad_norm.item() < math.inf and set(unclipped.terms) == {"charbonnier", "census"}


def test_training_speed_times_the_training_step_with_train_options(one_thread):
    """tools.training_speed takes tools.train's step options with its defaults; --amp / --channels_last time the one
    mode tools.train would run."""
    from tools import training_speed
    parser, train_defaults = training_speed.build_parser(), build_parser().parse_args([])
    defaults = parser.parse_args([])
    for name in ("loss_type", "flow_loss_weight", "flow_loss_decay_steps", "matching_loss_weight", "grad_clip",
                 "ema_decay", "channels_last", "init_lr", "weight_decay"):
        assert getattr(defaults, name) == getattr(train_defaults, name), name
    result = training_speed.main(["--batch_size", "1", "--crop", "32", "--warmup", "0", "--repeats", "1",
                                  "--device", "cpu", "--amp", "bf16", "--grad_clip", "1", "--ema_decay", "0.9",
                                  "--flow_loss_weight", "0.1", "--matching_loss_weight", "0.1"])
    assert list(result["modes"]) == ["bf16 channels_last"] and result["modes"]["bf16 channels_last"]["steps_per_s"] > 0
    assert result["step_options"] == {"loss_type": "charbonnier+census", "flow_loss_weight": 0.1,
                                      "flow_loss_decay_steps": 0, "matching_loss_weight": 0.1, "grad_clip": 1.0,
                                      "ema_decay": 0.9}
    assert list(training_speed.main(["--batch_size", "1", "--crop", "32", "--warmup", "0", "--repeats", "1",
                                     "--device", "cpu", "--no-channels_last"])["modes"]) == ["fp32"]


@pytest.mark.parametrize("teacher", ["dis", "dis_consistent"])
def test_matching_loss_is_logged_and_trains(vimeo, tmp_path, teacher):
    log_root = str(tmp_path / "log")
    result = run_train(tiny_args(vimeo, log_root, "matching", steps=2, flow_teacher=teacher, matching_loss_weight=0.1,
                                 flow_loss_weight=0.1), tmp_path)
    losses = logged_losses(os.path.join(log_root, "matching", "runtime.log"))
    assert sorted(losses) == [1, 2] and all(math.isfinite(v) for v in losses.values()), result.stdout[-2000:]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(log_root, "matching", "tensorboard")).Reload()
    assert {"train/loss_matching", "train/loss_flow"} <= set(events.Tags()["scalars"])


# ------------------------------------------------------------------------ the original README's command


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def launcher_run(vimeo, tmp_path_factory):
    """The original README's training command, run unchanged but for the paths, 2 processes and tiny sizes:
    python -m torch.distributed.launch --nproc_per_node=2 --master_port=P -m tools.train --world_size=2 ..."""
    cwd = tmp_path_factory.mktemp("launcher")
    log_root = str(cwd / "logs")
    original = ["--world_size=2", "--data_root", vimeo, "--train_log_root", log_root, "--exp_name", "upr-base",
                "--batch_size", "1", "--nr_data_worker", "0"]
    tiny = tiny_args(None, None, None, batch_size=None, nr_data_worker=None, steps=4, save_interval=2)
    command = [sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node=2", f"--master_port={free_port()}",
               "-m", "tools.train", *original, *tiny]
    result = subprocess.run(command, cwd=str(cwd), env=subprocess_env(), capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return cwd, log_root, result


def test_original_launcher_command(launcher_run):
    """torch.distributed.launch passes --local-rank=N (accepted; LOCAL_RANK wins), --world_size matches
    WORLD_SIZE, and the run is found where the original README's tensorboard command looks:
    ./train-log/upr-base/tensorboard (a ./train-log symlink to --train_log_root)."""
    cwd, log_root, result = launcher_run
    assert "world size 2, batch 1 per process (2 total)" in result.stdout
    assert re.search(r"command: \S+ --local-rank=0 --world_size=2 ", result.stdout), result.stdout[:2000]
    assert "tensorboard --logdir=./train-log/upr-base/tensorboard" in result.stdout
    state = load(os.path.join(checkpoint_dir(log_root, "upr-base"), "last.pt"))
    assert state["step"] == 4 and state["args"]["world_size"] == 2
    link = cwd / "train-log"
    assert link.is_symlink() and os.path.realpath(link) == os.path.realpath(log_root)
    events = glob.glob(str(link / "upr-base" / "tensorboard" / "events.out.tfevents.*"))
    assert len(events) == 1, events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    accumulator = EventAccumulator(events[0])
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("val/psnr")] == [2, 4]


MULTINODE_DRIVER = '''
"""tools.train.main() as a "node" would run it; records this rank's final weights and every checkpoint write."""
import json, os, sys
import torch
import tools.train as train

built, writes = [], []
build_model = train.build_model
train.build_model = lambda *args, **kwargs: built.append(build_model(*args, **kwargs)) or built[-1]
for name in ("save_weights", "save_training_state"):
    original = getattr(train, name)
    setattr(train, name, lambda *args, _original=original, _name=name, **kwargs:
            writes.append(_name) or _original(*args, **kwargs))
train.main(sys.argv[1:])
out, rank = os.environ["DRIVER_OUT"], os.environ["RANK"]
os.makedirs(out, exist_ok=True)
torch.save(built[0].state_dict(), os.path.join(out, "rank%s.pt" % rank))
with open(os.path.join(out, "writes%s.json" % rank), "w") as f:
    json.dump(writes, f)
'''


def run_two_nodes(driver, args, out, cwd):
    """Two torchrun "nodes" of one process each (--nnodes 2, c10d rendezvous on localhost), started concurrently;
    returns both outputs."""
    port, env = free_port(), subprocess_env()
    env["DRIVER_OUT"] = str(out)
    logs, processes = [], []
    try:
        for node_rank in (0, 1):
            logs.append(open(cwd / f"node{node_rank}-{out.name}.log", "w+"))
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node_rank),
                 "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
                 "--rdzv_id", out.name, "--monitor_interval", "0.1", str(driver), *args],
                cwd=str(cwd), env=env, stdout=logs[-1], stderr=subprocess.STDOUT))
        codes = [process.wait(timeout=TIMEOUT) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    assert codes == [0, 0], "\n".join(output[-3000:] for output in outputs)
    return outputs


def test_two_nodes_train_identically_write_once_and_resume(vimeo, tmp_path, launcher_run):
    """Two nodes: same parameters on both ranks, only global rank 0 writes (checkpoints, TensorBoard, log), and a
    run staged over two launches (--stop_at_step 2, then --resume True) ends with the weights of the straight
    2-process launcher run."""
    log_root = str(tmp_path / "shared-log")
    driver = tmp_path / "node_driver.py"
    driver.write_text(MULTINODE_DRIVER)
    args = tiny_args(vimeo, log_root, "two-nodes", batch_size=1, steps=4, save_interval=2)
    ckpt = checkpoint_dir(log_root, "two-nodes")
    for stage, extra in (("first", ["--stop_at_step", "2"]), ("resumed", ["--resume", "True"])):
        outputs = run_two_nodes(driver, args + extra, tmp_path / stage, tmp_path)
        text = "".join(outputs)
        assert text.count("world size 2, batch 1 per process (2 total)") == 1      # rank 0 logs, once
        assert_same_state(load(tmp_path / stage / "rank0.pt"), load(tmp_path / stage / "rank1.pt"))
        writes = [json.loads((tmp_path / stage / f"writes{rank}.json").read_text()) for rank in (0, 1)]
        assert writes[1] == [] and "save_training_state" in writes[0] and "save_weights" in writes[0]
        assert_same_state(load(tmp_path / stage / "rank0.pt"), load(os.path.join(ckpt, "last.pt"))["model"])
    assert "resumed from" in text and "at step 2" in text
    assert load(os.path.join(ckpt, "last.pt"))["step"] == 4
    assert sorted(os.listdir(ckpt)) == ["best.pkl", "last.pkl", "last.pt"]
    assert len(glob.glob(os.path.join(log_root, "two-nodes", "tensorboard", "events.*"))) == 2   # one per launch
    losses = logged_losses(os.path.join(log_root, "two-nodes", "runtime.log"))
    _, straight_root, _ = launcher_run
    assert losses == logged_losses(os.path.join(straight_root, "upr-base", "runtime.log"))
    assert_same_state(load(os.path.join(ckpt, "last.pt"))["model"],
                      load(os.path.join(checkpoint_dir(straight_root, "upr-base"), "last.pt"))["model"])


@pytest.mark.parametrize("argv, resume", [([], False), (["--resume"], True), (["--resume", "True"], True),
                                          (["--resume", "False"], False), (["--resume=true"], True),
                                          (["--resume=FALSE"], False), (["--resume", "--exp_name", "x"], True)])
def test_resume_accepts_a_bare_flag_and_true_false(argv, resume):
    assert parse_args(argv).resume is resume


def test_bad_resume_value_is_a_one_line_usage_error(capsys):
    with pytest.raises(SystemExit) as error:
        parse_args(["--resume", "maybe"])
    assert error.value.code == 2
    assert capsys.readouterr().err == ("tools.train: error: argument --resume: expected True or False, got 'maybe' "
                                       "(--help lists the options)\n")


def test_original_training_flags_parse():
    args = parse_args(["--local-rank=1", "--world_size=4", "--data_root", "/d", "--train_log_root", "/t",
                       "--exp_name", "upr-large", "--batch_size", "8", "--nr_data_worker", "2",
                       "--model_size", "large"])
    assert (args.local_rank, args.world_size, args.data_root, args.train_log_root, args.exp_name, args.batch_size,
            args.nr_data_worker, args.model_size) == (1, 4, "/d", "/t", "upr-large", 8, 2, "large")
    assert parse_args(["--local_rank", "3", "--model_size", "LARGE"]).local_rank == 3
    assert parse_args([]).local_rank is None and parse_args(["--model_size", "LARGE"]).model_size == "LARGE"


def test_ranks_come_from_the_launcher_environment():
    from core.training import process_ranks
    assert process_ranks(parse_args([]), {}) == (0, 1, 0)
    assert process_ranks(parse_args(["--local-rank=1"]), {}) == (0, 1, 1)             # no LOCAL_RANK: the flag
    environ = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}
    assert process_ranks(parse_args(["--local-rank=0", "--world_size=4"]), environ) == (3, 4, 1)  # LOCAL_RANK wins
    with pytest.raises(SystemExit, match=r"--world_size 4 but the launcher started 2 \(WORLD_SIZE\): launch 4"):
        process_ranks(parse_args(["--world_size=4"]), {"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(SystemExit, match=r"--world_size 2 but 1 process was started \(WORLD_SIZE is not set\)"):
        process_ranks(parse_args(["--world_size", "2"]), {})
