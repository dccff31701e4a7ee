"""Loading and saving weights: official layout, safetensors, clear errors for wrong or corrupt files."""
import pytest
import torch

import core
from core.checkpoint import CheckpointError, guess_model_size, read_state_dict, save_weights


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
