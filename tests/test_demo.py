"""The two-frame demo end to end (random-weight checkpoints), its input formats and its error messages."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import core
from core.cli import error_message, run_cli, UsageError
from demo import interp_imgs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(REPO, "demo", "images")


def image(name):
    return os.path.join(IMAGES, name)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "random-base.pkl"
    core.save_weights(core.build_model("base"), path)
    return str(path)


def run_demo(capsys, *args):
    code = interp_imgs.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def assert_one_line_error(code, err, *words):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


def test_shipped_triplets_exist():
    for name, size in (("bikes", (272, 640)), ("carphone", (144, 176)), ("tree", (240, 320))):
        shapes = [read(image(f"{name}_{k}.png")).shape for k in range(3)]
        assert shapes == [size + (3,)] * 3


def test_demo_on_shipped_pair(tmp_path, capsys, checkpoint):
    code, out, err = run_demo(capsys, "--frame0", image("bikes_0.png"), "--frame1", image("bikes_2.png"),
                              "--time_period", "0.5", "--model_file", checkpoint, "--output_dir", tmp_path,
                              "--gt", image("bikes_1.png"), "--device", "cpu")
    assert code == 0, err
    for name in ("bikes_interp_t0.5.png", "bikes_flow_0to1.png", "bikes_flow_1to0.png"):
        result = read(tmp_path / name)
        assert result.shape == (272, 640, 3) and result.dtype == np.uint8, name
        assert str(tmp_path / name) in out
    sheet = read(tmp_path / "bikes_sheet.png")
    assert sheet.shape[1] == 3 * 640 and sheet.shape[0] > 2 * 272
    assert "PSNR" in out and "averaging" in out


def test_several_times_and_num_frames(tmp_path, capsys, checkpoint):
    common = ["--frame0", image("carphone_0.png"), "--frame1", image("carphone_2.png"), "--model_file", checkpoint]
    code, out, err = run_demo(capsys, *common, "--time_period", "0.25", "0.5", "0.75", "--output_dir", tmp_path / "a")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "a")) == sorted(
        ["carphone_interp_t0.25.png", "carphone_interp_t0.5.png", "carphone_interp_t0.75.png",
         "carphone_flow_0to1.png", "carphone_flow_1to0.png", "carphone_sheet.png"])
    code, out, err = run_demo(capsys, *common, "--num_frames", "3", "--output_dir", tmp_path / "b")
    assert code == 0, err
    for t in ("0.25", "0.5", "0.75"):  # k / (N + 1)
        assert read(tmp_path / "b" / f"carphone_interp_t{t}.png").shape == (144, 176, 3)
    # --num_frames reuses the motion of one call: same frames as the explicit times
    assert np.array_equal(read(tmp_path / "a" / "carphone_interp_t0.75.png"),
                          read(tmp_path / "b" / "carphone_interp_t0.75.png"))


@pytest.mark.parametrize("kind", ["grey", "rgba", "16bit"])
def test_grey_rgba_and_16bit_inputs(tmp_path, capsys, checkpoint, kind):
    paths = []
    for k in (0, 2):
        bgr = read(image(f"carphone_{k}.png"))
        converted = {"grey": lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
                     "rgba": lambda: np.dstack([bgr, np.full(bgr.shape[:2], 200, np.uint8)]),
                     "16bit": lambda: bgr.astype(np.uint16) * 257}[kind]()
        paths.append(tmp_path / f"in_{k}.png")
        cv2.imwrite(str(paths[-1]), converted)
    code, out, err = run_demo(capsys, "--frame0", paths[0], "--frame1", paths[1], "--model_file", checkpoint,
                              "--output_dir", tmp_path / "out")
    assert code == 0, err
    result = read(tmp_path / "out" / "in_interp_t0.5.png")
    assert result.shape == (144, 176, 3)
    assert result.dtype == (np.uint16 if kind == "16bit" else np.uint8)
    assert read(tmp_path / "out" / "in_sheet.png").dtype == np.uint8


def test_weights_that_record_a_custom_variant_run_from_the_file_alone(tmp_path, capsys):
    """A file saved by save_weights records its ModelOptions: the demo builds that network whatever --model_size
    says (its default is base), and says what it loaded."""
    from core.options import ModelOptions
    options = ModelOptions(8, (40, 32, 28, 24, 16), 8)
    torch.manual_seed(0)
    variant = core.UPRNet("base", options=options)
    core.save_weights(variant, tmp_path / "variant.pkl")
    code, _, err = run_demo(capsys, "--frame0", image("carphone_0.png"), "--frame1", image("carphone_2.png"),
                            "--model_file", tmp_path / "variant.pkl", "--output_dir", tmp_path / "out")
    assert code == 0, err
    assert f"loaded custom weights from {tmp_path / 'variant.pkl'}" in err
    assert read(tmp_path / "out" / "carphone_interp_t0.5.png").shape == (144, 176, 3)


def test_bad_inputs_give_one_line_and_exit_2(tmp_path, capsys, checkpoint):
    frame0, frame1 = image("carphone_0.png"), image("carphone_2.png")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is not a PNG")
    corrupt = tmp_path / "corrupt.pkl"  # a truncated download
    data = open(checkpoint, "rb").read()
    corrupt.write_bytes(data[:len(data) // 2])
    large = tmp_path / "large.pkl"
    torch.save(core.build_model("large").state_dict(), large)   # official style: no recorded options
    model = ["--model_file", checkpoint, "--output_dir", tmp_path / "out"]
    cases = [
        (["--frame0", tmp_path / "missing.png", "--frame1", frame1, *model], ["not found", "missing.png"]),
        (["--frame0", frame0, "--frame1", not_an_image, *model], ["cannot read image", "notes.png"]),
        (["--frame0", image("bikes_0.png"), "--frame1", frame1, *model], ["frame sizes differ", "640x272", "176x144"]),
        (["--frame0", frame0, "--frame1", frame1, "--time_period", "1.5", *model], ["[0, 1]", "1.5"]),
        (["--frame0", frame0, "--frame1", frame1, "--time_period", "0.5", "-0.25", *model], ["[0, 1]", "-0.25"]),
        (["--frame0", frame0, "--frame1", frame1, "--num_frames", "0", *model], ["--num_frames"]),
        (["--frame0", frame0, "--frame1", frame1, "--gt", image("bikes_1.png"), *model], ["frame sizes differ"]),
        (["--frame0", frame0, "--frame1", frame1, "--model_file", corrupt], ["cannot read checkpoint", "corrupt.pkl"]),
        (["--frame0", frame0, "--frame1", frame1, "--model_file", large], ["does not fit", "'large'"]),
        (["--frame0", frame0, "--frame1", frame1, "--model_file", tmp_path / "nope.pkl"], ["checkpoint not found"]),
        (["--frame0", frame0, "--frame1", frame1, "--model_file", checkpoint, "--pyr_level", "0"], ["--pyr_level"]),
    ]
    for args, words in cases:
        code, out, err = run_demo(capsys, *args)
        assert_one_line_error(code, err, *words)
    assert not (tmp_path / "out").exists()


def test_command_line_error_exit_code_without_traceback(tmp_path, checkpoint):
    corrupt = tmp_path / "corrupt.pkl"
    data = open(checkpoint, "rb").read()
    corrupt.write_bytes(data[:len(data) // 3])
    for args, words in ((["--frame0", tmp_path / "missing.png"], ["image not found", "missing.png"]),
                        (["--frame0", image("bikes_0.png"), "--model_file", corrupt], ["corrupt.pkl"])):
        command = [sys.executable, "-m", "demo.interp_imgs", "--frame1", image("bikes_2.png"),
                   "--output_dir", tmp_path / "out", *args]
        result = subprocess.run([str(a) for a in command], cwd=REPO, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert_one_line_error(result.returncode, result.stderr, *words)


def test_run_cli_reports_known_errors_and_keeps_bugs(capsys):
    def bad_input(argv):
        raise UsageError("frame sizes differ:\n  640x272 vs 176x144")

    assert run_cli(bad_input) == 2
    assert capsys.readouterr().err == "error: frame sizes differ: 640x272 vs 176x144\n"
    assert error_message(FileNotFoundError(2, "No such file or directory", "x.png")) == \
        "No such file or directory: x.png"

    def bug(argv):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run_cli(bug)
    assert run_cli(lambda argv: None) == 0 and run_cli(lambda argv: 3) == 3


def test_readme_demo_command_beats_averaging_with_the_shipped_checkpoint(tmp_path, capsys):
    """The README's first command, as written (the shipped checkpoint, the shipped pair and its true middle)."""
    import re
    import shlex
    with open(os.path.join(REPO, "README.md")) as f:
        command = next(line for line in f if line.startswith("pip install -e . && python -m demo.interp_imgs"))
    args = shlex.split(command.split("python -m demo.interp_imgs", 1)[1])
    assert "--model_file" not in args and "--gt" in args
    code, out, err = run_demo(capsys, *args, "--output_dir", tmp_path, "--device", "cpu")
    assert code == 0, err
    ours, naive = map(float, re.search(r"UPR-Net ([\d.]+) dB, averaging the inputs ([\d.]+) dB", out).groups())
    assert ours > naive + 1.0, out
