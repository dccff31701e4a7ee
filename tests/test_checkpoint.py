"""Loading and saving weights: official layout, safetensors, clear errors for wrong or corrupt files, official
weights found by model size in checkpoints/."""
import os

import pytest
import torch

import core
import core.interpolator
from core.checkpoint import MODEL_OPTIONS_KEY, CheckpointError, guess_model_size, read_state_dict, save_weights
from core.options import ModelOptions


def _params_equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("suffix", [".pkl", ".safetensors"])
def test_save_and_load_roundtrip(tmp_path, suffix):
    model = core.build_model("base")
    path = tmp_path / f"weights{suffix}"
    save_weights(model, path)
    loaded = core.load_weights(core.build_model("base"), path)
    assert _params_equal(model, loaded)


def test_official_module_prefix_file(tmp_path, golden):
    path = tmp_path / "upr-base.pkl"
    torch.save(golden["state_dict"], path)             # as the official files: keys start with "module."
    model = core.load_weights(core.build_model("base"), path)
    key = "feat_pyramid.conv_stage0.0.weight"
    assert torch.equal(model.state_dict()[key], golden["state_dict"]["module." + key])


def test_wrong_size_names_the_size(golden):
    with pytest.raises(CheckpointError, match="look like model size 'base'.*mis-shaped"):
        core.load_weights(core.build_model("LARGE"), golden["state_dict"])
    assert guess_model_size({k[7:]: v for k, v in golden["state_dict"].items()}) == "base"


def test_missing_and_unexpected_keys_are_listed():
    state = core.build_model("base").state_dict()
    state.pop("synthesis_network.pred.bias")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="1 missing key.*pred.bias.*1 unexpected key.*extra.weight"):
        core.load_weights(core.build_model("base"), state)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "broken.pkl"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_state_dict(bad)
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.pkl")
    truncated = tmp_path / "truncated.pkl"
    save_weights(core.build_model("base"), truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(CheckpointError):
        core.load_weights(core.build_model("base"), truncated)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    torch.save({"model": core.build_model("base").state_dict(), "note": object()}, path)
    with pytest.raises(CheckpointError, match="pickles Python objects") as refused:
        read_state_dict(path)
    assert "weights_only=False" not in str(refused.value)    # never advise unpickling arbitrary objects


def test_garbage_pickle_is_refused_without_torch_warnings(tmp_path, recwarn):
    path = tmp_path / "garbage.pkl"
    path.write_bytes(b"\x80\x04garbage")                     # a pickle header, then nonsense
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*garbage.pkl: corrupt"):
        read_state_dict(path)
    assert len(recwarn) == 0


def test_average_weights_is_the_weighted_elementwise_mean(tmp_path):
    a = {"w": torch.tensor([1.0, -2.0, 4.0]), "steps": torch.tensor(7)}
    b = {"module.w": torch.tensor([3.0, 2.0, 0.0]), "module.steps": torch.tensor(7)}   # DDP prefix is dropped
    torch.save(a, tmp_path / "a.pkl")
    equal = core.average_weights([tmp_path / "a.pkl", b])
    assert torch.equal(equal["w"], torch.tensor([2.0, 0.0, 2.0])) and equal["steps"].item() == 7
    weighted = core.average_weights([a, b], weights=[3, 1])           # 0.75 a + 0.25 b
    assert torch.equal(weighted["w"], torch.tensor([1.5, -1.0, 3.0]))
    assert weighted["w"].dtype == torch.float32


def test_average_of_a_model_with_itself_is_the_model():
    model = core.build_model("base")
    state = model.state_dict()
    averaged = core.average_weights([state, state, state])
    assert all(torch.equal(averaged[k], v) for k, v in state.items())
    core.load_weights(core.build_model("base"), averaged)             # loads strictly


def test_average_weights_refuses_what_cannot_be_averaged():
    a = {"w": torch.zeros(3), "n": torch.tensor(1)}
    with pytest.raises(CheckpointError, match="different keys: v"):
        core.average_weights([a, {"w": torch.zeros(3), "n": torch.tensor(1), "v": torch.zeros(1)}])
    with pytest.raises(CheckpointError, match="shape at w"):
        core.average_weights([a, {"w": torch.zeros(4), "n": torch.tensor(1)}])
    with pytest.raises(CheckpointError, match="non-float tensor n"):
        core.average_weights([a, {"w": torch.zeros(3), "n": torch.tensor(2)}])
    with pytest.raises(CheckpointError, match="one non-negative weight per checkpoint"):
        core.average_weights([a, a], weights=[1])
    with pytest.raises(CheckpointError, match="one non-negative weight per checkpoint"):
        core.average_weights([a, a], weights=[1, -1])


def test_average_weights_tool(tmp_path, capsys):
    from tools import average_weights as tool
    torch.save({"w": torch.tensor([0.0, 4.0])}, tmp_path / "a.pkl")
    save_weights({"w": torch.tensor([2.0, 8.0])}, tmp_path / "b.safetensors")
    out = tmp_path / "soup.safetensors"
    assert tool.main([str(tmp_path / "a.pkl"), str(tmp_path / "b.safetensors"), "--weights", "1", "3",
                      "--out", str(out)]) == 0
    assert torch.equal(read_state_dict(out)["w"], torch.tensor([1.5, 7.0]))
    assert tool.main([str(tmp_path / "a.pkl"), "--out", str(out)]) == 2
    assert tool.main([str(tmp_path / "a.pkl"), str(tmp_path / "missing.pkl"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "at least two checkpoints" in err and "checkpoint not found" in err


# ------------------------------------------------------------------------------- official weights by name


@pytest.fixture
def checkpoints_dir(tmp_path, monkeypatch):
    """An empty checkpoints/ folder in place of the repository's."""
    import core.checkpoint
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    monkeypatch.setattr(core.checkpoint, "CHECKPOINTS_DIR", str(folder))
    return folder


def test_default_model_file_lookup_order(checkpoints_dir):
    """base: an official upr.pkl, else the shipped upr-base.pkl; large: upr_large.pkl, else upr-large.pkl; LARGE:
    upr_llarge.pkl, else upr-llarge.pkl; none of them: a one-line error telling where to put the file."""
    from core.checkpoint import default_model_file
    for size, names in (("base", ["upr.pkl", "upr-base.pkl"]), ("large", ["upr_large.pkl", "upr-large.pkl"]),
                        ("LARGE", ["upr_llarge.pkl", "upr-llarge.pkl"])):
        paths = [str(checkpoints_dir / name) for name in names]
        with pytest.raises(CheckpointError) as missing:
            default_model_file(size)
        assert f"put the official weights at {paths[0]} or {paths[1]}, or pass the file (--model_file)" \
               in str(missing.value) and "\n" not in str(missing.value)
        (checkpoints_dir / names[1]).write_bytes(b"")
        assert default_model_file(size) == paths[1]
        (checkpoints_dir / names[0]).write_bytes(b"")
        assert default_model_file(size) == paths[0]
    with pytest.raises(CheckpointError, match="unknown model size 'huge'"):
        default_model_file("huge")


def test_shipped_checkpoint_is_the_base_default():
    from core.checkpoint import CHECKPOINTS_DIR, default_model_file
    if os.path.exists(os.path.join(CHECKPOINTS_DIR, "upr.pkl")):
        pytest.skip("an official checkpoints/upr.pkl is present and takes precedence")
    assert default_model_file("base") == os.path.join(CHECKPOINTS_DIR, "upr-base.pkl")
    assert default_model_file() == core.interpolator.SHIPPED_CHECKPOINT


def _official_file(path, size, seed):
    torch.manual_seed(seed)
    model = core.build_model(size)
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, path)    # as the official files
    return model


@pytest.mark.parametrize("size, name", [("large", "upr_large.pkl"), ("LARGE", "upr-llarge.pkl"), ("base", "upr.pkl")])
def test_tools_find_official_weights_by_model_size_and_say_which(checkpoints_dir, capsys, size, name):
    """--model_size alone loads the official file placed in checkpoints/, and the tool prints it on stderr; the
    Python API (Interpolator.from_checkpoint) finds the same file."""
    import argparse
    from core.cli import add_model_arguments, interpolator_from_args
    expected = _official_file(checkpoints_dir / name, size, seed=3)
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    interpolator = interpolator_from_args(parser.parse_args(["--model_size", size, "--device", "cpu"]))
    assert _params_equal(interpolator.model, expected)
    assert capsys.readouterr().err == f"loaded {size} weights from {checkpoints_dir / name}\n"
    assert _params_equal(core.Interpolator.from_checkpoint(model_size=size, device="cpu").model, expected)


def test_missing_official_weights_are_a_one_line_tool_error(checkpoints_dir, tmp_path, capsys):
    from demo import interp_imgs
    frame = tmp_path / "frame.png"
    import cv2
    import numpy as np
    cv2.imwrite(str(frame), np.zeros((32, 32, 3), np.uint8))
    code = interp_imgs.main(["--frame0", str(frame), "--frame1", str(frame), "--model_size", "LARGE",
                             "--output_dir", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err == (f"error: no checkpoint ships for model size 'LARGE': put the official weights at "
                                 f"{checkpoints_dir / 'upr_llarge.pkl'} or {checkpoints_dir / 'upr-llarge.pkl'}, "
                                 f"or pass the file (--model_file)\n")
    with pytest.raises(core.InputError, match="no checkpoint ships for model size 'large'"):
        core.Interpolator.from_checkpoint(model_size="large")


# ------------------------------------------------------------------------------- options saved with the weights

CUSTOM = ModelOptions(feature_channels=8, motion_channels=(40, 32, 28, 24, 16), synthesis_channels=8)


@pytest.mark.parametrize("suffix", [".pkl", ".safetensors"])
def test_custom_variant_reloads_from_its_file_alone(tmp_path, suffix):
    """A custom ModelOptions variant saved as .pkl / .safetensors is rebuilt from the file alone (core.load_model)
    and interpolates exactly as the saved model; the file records the options in plain values."""
    torch.manual_seed(4)
    model = core.UPRNet("tiny", pyr_level=2, options=CUSTOM).eval()
    path = tmp_path / f"tiny{suffix}"
    save_weights(model, path)
    loaded = core.load_model(path, pyr_level=2).eval()
    assert (loaded.model_size, loaded.options) == ("tiny", CUSTOM)
    assert _params_equal(model, loaded)
    img0, img1 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(img0, img1, 0.5)[0], loaded(img0, img1, 0.5)[0])
    assert read_state_dict(path).keys() == model.state_dict().keys()          # the record is not a weight
    if suffix == ".pkl":   # plain values beside the tensors: weights_only torch.load reads the file
        record = torch.load(path, weights_only=True)[MODEL_OPTIONS_KEY]
        assert record == {"model_size": "tiny", "feature_channels": 8, "motion_channels": [40, 32, 28, 24, 16],
                          "synthesis_channels": 8, "max_displacement": 4}
    # a network with an official size's name but other widths is saved as what it is and comes back "custom"
    save_weights(core.UPRNet("base", options=CUSTOM), path)
    assert (core.load_model(path).model_size, core.load_model(path).options) == ("custom", CUSTOM)
    # a custom variant loads as recorded whatever size is asked for; an official size must be the one asked for
    assert core.load_model(path, model_size="large").options == CUSTOM
    save_weights(core.build_model("large"), path)
    assert core.load_model(path, model_size="large").model_size == "large"
    with pytest.raises(CheckpointError, match="does not fit"):
        core.load_model(path, model_size="base")


@pytest.mark.parametrize("size", ["base", "large"])
def test_official_sizes_are_named_and_files_without_options_load_by_size(tmp_path, size):
    torch.manual_seed(2)
    model = core.build_model(size)
    save_weights(model, tmp_path / "ours.safetensors")
    assert core.load_model(tmp_path / "ours.safetensors").model_size == size
    official = tmp_path / "official.pkl"           # as the official files: module. keys, no options
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, official)
    loaded = core.load_model(official, pyr_level=2, nr_lvl_skipped=1)
    assert (loaded.model_size, loaded.options, loaded.pyr_level) == (size, core.MODEL_SIZES[size], 2)
    assert _params_equal(model, loaded)
    assert _params_equal(model, core.load_weights(core.build_model(size), tmp_path / "ours.safetensors"))


def test_shipped_checkpoint_loads_by_size_and_unsized_files_are_a_clear_error(tmp_path):
    from core.checkpoint import CHECKPOINTS_DIR
    shipped = os.path.join(CHECKPOINTS_DIR, "upr-base.pkl")
    model = core.load_model(shipped)
    assert model.model_size == "base"
    assert _params_equal(model, core.load_weights(core.build_model("base"), shipped))
    save_weights(core.UPRNet("tiny", options=CUSTOM).state_dict(), tmp_path / "bare.pkl")   # a state dict: no record
    with pytest.raises(CheckpointError, match="records no model options and its widths match no official size"):
        core.load_model(tmp_path / "bare.pkl")
    save_weights(core.UPRNet("tiny", options=CUSTOM).state_dict(), tmp_path / "given.pkl", options=("tiny", CUSTOM))
    assert core.load_model(tmp_path / "given.pkl").options == CUSTOM


def test_weights_with_options_still_load_as_state_dicts(tmp_path):
    """A torch.load-ed file of ours (record included) loads with load_weights, averages, and loads non-strictly
    into a plain nn.Module.load_state_dict."""
    model = core.build_model("base")
    save_weights(model, tmp_path / "w.pkl")
    raw = torch.load(tmp_path / "w.pkl", weights_only=True)
    assert MODEL_OPTIONS_KEY in raw
    assert _params_equal(model, core.load_weights(core.build_model("base"), raw))
    assert core.average_weights([raw, tmp_path / "w.pkl"]).keys() == model.state_dict().keys()
    core.build_model("base").load_state_dict(raw, strict=False)
