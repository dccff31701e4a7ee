"""Benchmark tools: dataset layouts, the evaluation loop's scores, the four scripts end to end, the plot tool.

Fixtures are tiny (64 x 96 frames, 2-3 samples per layout) and the model has random weights: the numbers are
meaningless, but every score is checked against an independent computation (numpy PSNR, scikit-image SSIM on
the saved 8-bit predictions) or a known answer (oracle and known-noise stubs).
"""
import json
import math
import os
import shutil
import sys

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:                  # `tools` is a plain folder next to `core`
    sys.path.insert(0, ROOT)

import core  # noqa: E402
from core import evaluation, metrics  # noqa: E402
from core.data import benchmark_sets  # noqa: E402
from core.data.benchmark_sets import BenchmarkSet, Sample  # noqa: E402
from tools import (benchmark_8x_4k1000fps, benchmark_common, benchmark_snufilm, benchmark_ucf101,  # noqa: E402
                   benchmark_vimeo90k, compare_results, plot_results)

H, W = 64, 96
FAST = ["--nr_data_worker", "0", "--threads", "1", "--no_progress"]
RESULT_KEYS = {"dataset", "model_size", "model_file", "subsets", "seconds", "pyr_level", "nr_lvl_skipped",
               "device", "threads"}
SUBSET_KEYS = {"psnr", "ssim", "psnr_float", "ssim_float", "count"}


def _write(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, image)


def _frame(rng, h=H, w=W):
    """Smooth random frame (so SSIM is not trivially ~0) as H x W x 3 uint8."""
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny copies of the four layouts and a random-weight base checkpoint."""
    root = tmp_path_factory.mktemp("benchmarks")
    rng = np.random.default_rng(0)
    paths = {"model": str(root / "random-base.pkl")}
    core.save_weights(core.build_model("base"), paths["model"])

    vimeo = root / "vimeo"
    lines = ["00001/0001", "00001/0002", "00002/0001"]
    for line in lines:
        for i in (1, 2, 3):
            _write(str(vimeo / "sequences" / line / f"im{i}.png"), _frame(rng))
    (vimeo / "tri_testlist.txt").write_text("\n".join(lines) + "\n\n")
    paths["vimeo"] = str(vimeo)

    ucf = root / "ucf101"
    for name in ("1", "2", "10"):
        for f in ("frame_00.png", "frame_01_gt.png", "frame_02.png"):
            _write(str(ucf / name / f), _frame(rng, 64, 64))
    paths["ucf"] = str(ucf)

    snu = root / "snufilm"
    for subset in benchmark_sets.SNUFILM_SUBSETS:
        list_lines = []
        for k, (h, w) in enumerate([(H, W), (W, H)]):          # two sizes: batches must be split
            names = [f"test/GOPRO_test/{subset}{k}/{i:06d}.png" for i in (1, 2, 3)]
            for name in names:
                _write(str(snu / name), _frame(rng, h, w))
            list_lines.append(" ".join(f"data/SNU-FILM/{name}" for name in names))
        os.makedirs(snu / "eval_modes", exist_ok=True)
        (snu / "eval_modes" / f"test-{subset}.txt").write_text("\n".join(list_lines) + "\n")
    paths["snu"] = str(snu)

    xtest = root / "xtest"
    for kind, scene in (("Type1", "TEST01_003_f0433"), ("Type2", "TEST05_158_f0321")):
        for i in range(33):
            _write(str(xtest / kind / scene / f"{i:04d}.png"), _frame(rng, 64, 64))
    paths["xtest"] = str(xtest)
    return paths


def _run(module, args, tmp_path, capsys, name="result.json"):
    out = str(tmp_path / name)
    module.main(args + ["--out_json", out] + FAST)
    printed = capsys.readouterr().out
    with open(out) as f:
        return json.load(f), printed


def _expect_error(module, args, capsys, *fragments):
    with pytest.raises(SystemExit) as exit_info:
        module.main(args + FAST)
    assert exit_info.value.code == 2
    # the one error line, after at most the line naming the weights that were loaded
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("loaded ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def _numpy_psnr(prediction, target):
    mse = np.mean((prediction.astype(np.float64) / 255 - target.astype(np.float64) / 255) ** 2)
    return 100.0 if mse == 0 else min(100.0, -10 * math.log10(mse))


def _skimage_ssim(prediction, target):
    """The field's SSIM on uint8 RGB or float [0, 1] arrays."""
    to_unit = lambda a: a.astype(np.float64) / 255 if a.dtype == np.uint8 else a.astype(np.float64)
    return structural_similarity(to_unit(prediction), to_unit(target), gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0, channel_axis=2)


def _check_shape(result, subsets):
    assert RESULT_KEYS <= set(result)
    assert list(result["subsets"]) == subsets
    for scores in result["subsets"].values():
        assert SUBSET_KEYS <= set(scores)
        assert all(math.isfinite(scores[k]) for k in ("psnr", "ssim", "psnr_float", "ssim_float"))


# --- layouts -----------------------------------------------------------------------------------------------

def test_layout_listings(data):
    vimeo = benchmark_sets.vimeo90k(data["vimeo"])
    assert [s.name for s in vimeo.samples] == ["00001/0001", "00001/0002", "00002/0001"]
    first = vimeo.samples[0]
    assert first.frame0.endswith("im1.png") and first.frame1.endswith("im3.png")
    assert first.targets[0].endswith("im2.png") and first.times == (0.5,)

    assert [s.name for s in benchmark_sets.ucf101(data["ucf"]).samples] == ["1", "2", "10"]   # natural order

    snu = benchmark_sets.snufilm(data["snu"])
    assert snu.counts() == {s: 2 for s in benchmark_sets.SNUFILM_SUBSETS}
    assert snu.notes == ["dropped leading 'data/SNU-FILM/' from 24 paths"]
    assert all(os.path.isfile(p) for s in snu.samples for p in (s.frame0, s.frame1, *s.targets))

    xtest = benchmark_sets.xtest(data["xtest"])
    scene = xtest.samples[0]
    assert [s.subset for s in xtest.samples] == ["Type1", "Type2"]
    assert scene.frame0.endswith("0000.png") and scene.frame1.endswith("0032.png")
    assert [os.path.basename(p) for p in scene.targets] == [f"{4 * k:04d}.png" for k in range(1, 8)]
    assert scene.times == tuple(k / 8 for k in range(1, 8))


def test_snufilm_lists_without_prefix(data, tmp_path):
    root = tmp_path / "snu"
    shutil.copytree(data["snu"], root)
    for path in (root / "eval_modes").iterdir():
        path.write_text(path.read_text().replace("data/SNU-FILM/", ""))
    listed = benchmark_sets.snufilm(str(root))
    assert len(listed.samples) == 8 and listed.notes == []


# --- scores against independent computations -----------------------------------------------------------------

class _StubInterpolator:
    """Returns frame 0 (which the fixture makes equal to the ground truth) plus Gaussian noise of sigma."""

    def __init__(self, sigma=0.0, seed=0):
        self.device = torch.device("cpu")
        self.sigma = sigma
        self.generator = torch.Generator().manual_seed(seed)
        self.outputs = []

    def interpolate_tensors(self, img0, img1, times):
        frames = [img0 + self.sigma * torch.randn(img0.shape, generator=self.generator) for _ in times]
        self.outputs += [f.clamp(0, 1) for f in frames]
        return frames, None


@pytest.fixture(scope="module")
def still_set(tmp_path_factory):
    """Three samples whose frame 0, frame 1 and ground truth are the same mid-grey textured image (values in
    [77, 178] so sigma-0.02 noise is essentially never clipped)."""
    root = tmp_path_factory.mktemp("still")
    rng = np.random.default_rng(1)
    samples = []
    for i in range(3):
        path = str(root / f"{i}.png")
        _write(path, (77 + _frame(rng).astype(np.int32) * 101 // 255).astype(np.uint8))
        samples.append(Sample("still", str(i), path, path, (path,), (0.5,), (f"{i}.png",)))
    return BenchmarkSet("still", str(root), samples)


def test_oracle_scores_cap_psnr_and_give_ssim_one(still_set):
    result = evaluation.evaluate(_StubInterpolator(0.0), still_set, progress=False, log=lambda line: None)
    scores = result["subsets"]["still"]
    assert scores["count"] == 3 and scores["samples"] == 3
    assert scores["psnr"] == pytest.approx(metrics.PSNR_CAP) and scores["psnr_float"] == pytest.approx(100.0)
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-6) and scores["ssim_float"] == pytest.approx(1.0, abs=1e-6)


def test_known_noise_gives_expected_psnr_and_skimage_ssim(still_set, tmp_path):
    sigma = 0.02
    stub = _StubInterpolator(sigma)
    result = evaluation.evaluate(stub, still_set, save_dir=str(tmp_path), progress=False, log=lambda line: None)
    scores = result["subsets"]["still"]
    # MSE of M = 3*64*96 Gaussian errors has relative std sqrt(2/M) ~ 1%, i.e. 0.045 dB per frame and 0.026 dB
    # for the mean of 3 frames; 0.15 dB is > 5 standard deviations. Rounding a prediction to 8 bits adds
    # uniform error of variance 1/(12 * 255^2) to an 8-bit ground truth.
    assert scores["psnr_float"] == pytest.approx(-10 * math.log10(sigma ** 2), abs=0.15)
    assert scores["psnr"] == pytest.approx(-10 * math.log10(sigma ** 2 + 1 / (12 * 255 ** 2)), abs=0.15)

    saved = [cv2.imread(str(tmp_path / s.save_names[0])) for s in still_set.samples]
    truth = [cv2.imread(s.targets[0]) for s in still_set.samples]
    assert scores["psnr"] == pytest.approx(np.mean([_numpy_psnr(p, t) for p, t in zip(saved, truth)]), abs=1e-4)
    assert scores["ssim"] == pytest.approx(np.mean([_skimage_ssim(p, t) for p, t in zip(saved, truth)]), abs=1e-3)
    frames = result["frames"]                                       # each frame's own scores, in reading order
    assert [(f["subset"], f["name"]) for f in frames] == [("still", s.save_names[0]) for s in still_set.samples]
    for record, p, t in zip(frames, saved, truth):
        assert record["psnr"] == pytest.approx(_numpy_psnr(p, t), abs=1e-4)
        assert record["ssim"] == pytest.approx(_skimage_ssim(p, t), abs=1e-3)
    floats = [o[0].permute(1, 2, 0).numpy()[..., ::-1] for o in stub.outputs]          # RGB -> BGR like cv2
    assert scores["ssim_float"] == pytest.approx(np.mean([_skimage_ssim(f, t) for f, t in zip(floats, truth)]),
                                                 abs=1e-3)


def test_banded_ssim_equals_direct(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 100, 80, generator=generator)
    y = (x + 0.1 * torch.rand(2, 3, 100, 80, generator=generator)).clamp(0, 1)
    monkeypatch.setattr(evaluation, "_SSIM_DIRECT_LIMIT", 100)
    monkeypatch.setattr(evaluation, "_SSIM_BAND_PIXELS", 17 * 80)             # bands of 17 rows, last one short
    assert torch.allclose(evaluation.ssim_memory_bounded(x, y), metrics.ssim(x, y), atol=1e-6)


# --- the scripts end to end -----------------------------------------------------------------------------------

def test_vimeo90k_end_to_end_matches_saved_predictions(data, tmp_path, capsys):
    save_dir = tmp_path / "predictions"
    result, printed = _run(benchmark_vimeo90k, ["--data_root", data["vimeo"], "--model_file", data["model"],
                                                "--save_dir", str(save_dir)], tmp_path, capsys)
    _check_shape(result, ["vimeo90k"])
    assert result["subsets"]["vimeo90k"]["count"] == 3
    assert (result["pyr_level"], result["nr_lvl_skipped"], result["pad_multiple"]) == (3, 0, 64)
    assert result["model_size"] == "base" and result["model_file"] == os.path.abspath(data["model"])
    assert "vimeo90k: 3 frames" in printed and "PSNR float" in printed
    predictions, truths = [], []
    for line in ("00001/0001", "00001/0002", "00002/0001"):
        predictions.append(cv2.imread(str(save_dir / line / "im2.png")))
        truths.append(cv2.imread(os.path.join(data["vimeo"], "sequences", line, "im2.png")))
    scores = result["subsets"]["vimeo90k"]
    assert scores["psnr"] == pytest.approx(np.mean([_numpy_psnr(p, t) for p, t in zip(predictions, truths)]),
                                           abs=1e-4)
    assert scores["ssim"] == pytest.approx(np.mean([_skimage_ssim(p, t) for p, t in zip(predictions, truths)]),
                                           abs=1e-3)
    assert abs(scores["psnr"] - scores["psnr_float"]) < 0.1


def test_ucf101_with_a_worker_process_and_batches(data, tmp_path, capsys):
    result, _ = _run(benchmark_ucf101, ["--data_root", data["ucf"], "--model_file", data["model"],
                                        "--batch_size", "2", "--nr_data_worker", "1"], tmp_path, capsys)
    _check_shape(result, ["ucf101"])
    assert result["subsets"]["ucf101"]["count"] == 3 and result["batch_size"] == 2


def test_batching_does_not_change_scores(data, tmp_path, capsys):
    args = ["--data_root", data["snu"], "--model_file", data["model"], "--subsets", "easy", "hard"]
    single, _ = _run(benchmark_snufilm, args, tmp_path, capsys, "single.json")
    batched, _ = _run(benchmark_snufilm, args + ["--batch_size", "2"], tmp_path, capsys, "batched.json")
    for subset in ("easy", "hard"):
        for key in ("psnr", "ssim", "psnr_float", "ssim_float"):
            assert batched["subsets"][subset][key] == pytest.approx(single["subsets"][subset][key], abs=1e-3)


def test_snufilm_with_released_prefix(data, tmp_path, capsys):
    result, printed = _run(benchmark_snufilm, ["--data_root", data["snu"], "--model_file", data["model"]],
                           tmp_path, capsys)
    _check_shape(result, list(benchmark_sets.SNUFILM_SUBSETS))
    assert all(result["subsets"][s]["count"] == 2 for s in benchmark_sets.SNUFILM_SUBSETS)
    assert result["pyr_level"] == 5 and result["nr_lvl_skipped"] == 0
    assert "note: dropped leading 'data/SNU-FILM/' from 24 paths" in printed
    assert result["notes"] == ["dropped leading 'data/SNU-FILM/' from 24 paths"]


def test_xtest_scores_all_seven_frames_per_scene(data, tmp_path, capsys):
    save_dir = tmp_path / "x"
    result, _ = _run(benchmark_8x_4k1000fps, ["--test_data_path", data["xtest"], "--model_file", data["model"],
                                              "--pyr_level", "3", "--nr_lvl_skipped", "0",
                                              "--save_dir", str(save_dir)], tmp_path, capsys)
    _check_shape(result, ["Type1", "Type2", "all"])
    assert result["subsets"]["Type1"]["count"] == 7 and result["subsets"]["Type1"]["samples"] == 1
    assert result["subsets"]["all"]["count"] == 14
    assert len(list(save_dir.rglob("*.png"))) == 14


def test_xtest_defaults_to_the_papers_pyramid():
    args = benchmark_common.build_parser(benchmark_8x_4k1000fps.SPEC).parse_args(["--test_data_path", "x"])
    assert (args.pyr_level, args.nr_lvl_skipped) == (7, 2)
    assert core.frames.pad_multiple(args.pyr_level) == 256
    for module, level in ((benchmark_vimeo90k, 3), (benchmark_ucf101, 3), (benchmark_snufilm, 5)):
        args = benchmark_common.build_parser(module.SPEC).parse_args(["--data_root", "x"])
        assert (args.pyr_level, args.nr_lvl_skipped, args.model_size) == (level, 0, "base")


def test_limit(data, tmp_path, capsys):
    result, _ = _run(benchmark_vimeo90k, ["--data_root", data["vimeo"], "--model_file", data["model"],
                                          "--limit", "2"], tmp_path, capsys)
    assert result["subsets"]["vimeo90k"]["count"] == 2 and result["limit"] == 2
    result, _ = _run(benchmark_snufilm, ["--data_root", data["snu"], "--model_file", data["model"],
                                         "--limit", "1"], tmp_path, capsys)
    assert [s["count"] for s in result["subsets"].values()] == [1, 1, 1, 1]


# --- errors: one line, exit code 2 ----------------------------------------------------------------------------

def test_missing_list_file_and_image(data, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    _expect_error(benchmark_vimeo90k, ["--data_root", str(empty), "--model_file", data["model"]], capsys,
                  "list file not found", str(empty / "tri_testlist.txt"))
    _expect_error(benchmark_snufilm, ["--data_root", str(empty), "--model_file", data["model"]], capsys,
                  str(empty / "eval_modes" / "test-easy.txt"))
    _expect_error(benchmark_8x_4k1000fps, ["--test_data_path", str(empty / "nowhere"),
                                           "--model_file", data["model"]], capsys, str(empty / "nowhere"))

    vimeo = tmp_path / "vimeo"
    shutil.copytree(data["vimeo"], vimeo)
    missing = vimeo / "sequences" / "00001" / "0002" / "im3.png"
    missing.unlink()
    _expect_error(benchmark_vimeo90k, ["--data_root", str(vimeo), "--model_file", data["model"]], capsys,
                  "image not found", str(missing))

    ucf = tmp_path / "ucf"
    shutil.copytree(data["ucf"], ucf)
    (ucf / "10" / "frame_01_gt.png").unlink()
    _expect_error(benchmark_ucf101, ["--data_root", str(ucf), "--model_file", data["model"]], capsys,
                  str(ucf / "10" / "frame_01_gt.png"))

    snu = tmp_path / "snu"
    shutil.copytree(data["snu"], snu)
    gone = snu / "test" / "GOPRO_test" / "hard1" / "000002.png"
    gone.unlink()
    _expect_error(benchmark_snufilm, ["--data_root", str(snu), "--model_file", data["model"]], capsys,
                  "data/SNU-FILM/test/GOPRO_test/hard1/000002.png", "test-hard.txt line 2")


def test_bad_layouts_and_checkpoints(data, tmp_path, capsys):
    xtest = tmp_path / "xtest"
    shutil.copytree(data["xtest"], xtest)
    (xtest / "Type2" / "TEST05_158_f0321" / "0032.png").unlink()
    _expect_error(benchmark_8x_4k1000fps, ["--test_data_path", str(xtest), "--model_file", data["model"]], capsys,
                  "has 32 PNG frames, expected 33")
    _expect_error(benchmark_vimeo90k, ["--data_root", data["vimeo"], "--model_file", str(tmp_path / "no.pkl")],
                  capsys, "checkpoint not found", str(tmp_path / "no.pkl"))
    _expect_error(benchmark_vimeo90k, ["--data_root", data["vimeo"], "--model_file", data["model"],
                                       "--model_size", "large"], capsys, "does not fit this model")
    _expect_error(benchmark_vimeo90k, ["--data_root", data["vimeo"], "--model_file", data["model"],
                                       "--pyr_level", "2", "--nr_lvl_skipped", "2"], capsys, "--nr_lvl_skipped")

    corrupt = tmp_path / "corrupt"
    shutil.copytree(data["vimeo"], corrupt)
    (corrupt / "sequences" / "00002" / "0001" / "im1.png").write_bytes(b"not a png")
    _expect_error(benchmark_vimeo90k, ["--data_root", str(corrupt), "--model_file", data["model"]], capsys,
                  "cannot read image", "00002/0001/im1.png")


# --- plot -----------------------------------------------------------------------------------------------------

def test_plot_results(data, tmp_path, capsys):
    vimeo, _ = _run(benchmark_vimeo90k, ["--data_root", data["vimeo"], "--model_file", data["model"]],
                    tmp_path, capsys, "vimeo.json")
    large = dict(vimeo, model_size="large", subsets={"vimeo90k": dict(vimeo["subsets"]["vimeo90k"], psnr=30.0)})
    (tmp_path / "vimeo_large.json").write_text(json.dumps(large))
    runtime = {"tool": "runtime", "device": "cpu", "threads": 2, "resolution": "640x480",
               "sizes": {"base": {"latency_ms": 1800.0}, "large": {"latency_ms": 3900.0}}}
    (tmp_path / "runtime.json").write_text(json.dumps(runtime))
    out = tmp_path / "figure.png"
    plot_results.main([str(tmp_path / "runtime.json"), str(tmp_path / "vimeo.json"),
                       str(tmp_path / "vimeo_large.json"), "--out", str(out)])
    assert "vimeo90k: base 1800.0 ms" in capsys.readouterr().out
    image = cv2.imread(str(out))
    assert image is not None and image.shape == (600, 960, 3)
    with pytest.raises(SystemExit) as exit_info:
        plot_results.main([str(tmp_path / "vimeo.json"), "--out", str(out)])
    assert exit_info.value.code == 2 and "nothing to plot" in capsys.readouterr().err
    (tmp_path / "cut.json").write_text('{"subsets": ')
    (tmp_path / "list.json").write_text("[1, 2]")
    for name in ("cut.json", "list.json"):
        with pytest.raises(SystemExit) as exit_info:
            plot_results.main([str(tmp_path / name), "--out", str(out)])
        assert exit_info.value.code == 2 and f"{name} is not a JSON result" in capsys.readouterr().err


# --- comparing two results frame by frame ------------------------------------------------------------------------

def _scored(subset, name, psnr):
    return {"subset": subset, "name": name, "psnr": psnr, "ssim": 0.9, "psnr_float": psnr, "ssim_float": 0.9}


def test_paired_differences_by_subset_and_by_folder():
    a = [_scored("hard", "hard/clip1/0.png", 30.0), _scored("hard", "hard/clip2/0.png", 20.0),
         _scored("easy", "easy/clip1/1.png", 40.0)]
    b = [_scored("hard", "hard/clip1/0.png", 29.0), _scored("hard", "hard/clip2/0.png", 22.0),
         _scored("easy", "easy/clip1/1.png", 39.5)]
    by_subset = evaluation.paired_differences(a, b)
    assert list(by_subset) == ["hard", "easy"]
    assert by_subset["hard"] == {"count": 2, "a": 25.0, "b": 25.5, "difference": -0.5, "min": -2.0, "max": 1.0,
                                 "a_better": 1}
    assert by_subset["easy"]["difference"] == 0.5 and by_subset["easy"]["a_better"] == 1
    by_folder = evaluation.paired_differences(a, b, by="folder")
    assert {k: v["difference"] for k, v in by_folder.items()} == {"hard/clip1": 1.0, "hard/clip2": -2.0,
                                                                  "easy/clip1": 0.5}


def test_compare_results_tool_prints_groups_and_rejects_other_frames(tmp_path, capsys):
    a = {"frames": [_scored("x", "x/c/0.png", 31.0), _scored("x", "x/c/1.png", 33.0)]}
    b = {"frames": [_scored("x", "x/c/0.png", 30.0), _scored("x", "x/c/1.png", 30.0)]}
    paths = []
    for name, result in (("a", a), ("b", b), ("c", {"frames": b["frames"][:1]}), ("old", {"subsets": {}})):
        paths.append(str(tmp_path / f"{name}.json"))
        with open(paths[-1], "w") as f:
            json.dump(result, f)
    assert compare_results.main(paths[:2]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row == ["x", "2", "32.000", "30.000", "+2.000", "+1.00", "+3.00", "2"]
    assert compare_results.main([paths[0], paths[2]]) == 2
    assert "different frames" in capsys.readouterr().err
    assert compare_results.main([paths[0], paths[3]]) == 2
    assert "no per-frame scores" in capsys.readouterr().err
    (tmp_path / "cut.json").write_text('{"frames": [')
    assert compare_results.main([paths[0], str(tmp_path / "cut.json")]) == 2
    assert "cut.json is not a JSON result" in capsys.readouterr().err
