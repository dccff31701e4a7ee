"""The original UPR-Net README's benchmark and runtime commands parse here unchanged (flags only; the tools
themselves are tested in test_benchmarks.py and test_runtime.py, training in test_training.py)."""
import pytest

from tools import benchmark_8x_4k1000fps, benchmark_snufilm, benchmark_ucf101, benchmark_vimeo90k, runtime
from tools.benchmark_common import build_parser


@pytest.mark.parametrize("tool", [benchmark_vimeo90k, benchmark_ucf101, benchmark_snufilm, benchmark_8x_4k1000fps])
@pytest.mark.parametrize("data_flag", ["--data_root", "--test_data_path"])
@pytest.mark.parametrize("size, model_file", [("base", "./checkpoints/upr.pkl"),
                                              ("large", "./checkpoints/upr_large.pkl"),
                                              ("LARGE", "./checkpoints/upr_llarge.pkl")])
def test_benchmark_commands_parse(tool, data_flag, size, model_file):
    args = build_parser(tool.SPEC).parse_args(["--model_size", size, "--model_file", model_file, data_flag, "/data"])
    assert (args.data_root, args.model_size, args.model_file) == ("/data", size, model_file)
    assert (args.pyr_level, args.nr_lvl_skipped) == (tool.SPEC.pyr_level, tool.SPEC.nr_lvl_skipped)
    assert build_parser(tool.SPEC).parse_args([data_flag, "/data"]).model_file is None   # found by --model_size


def test_runtime_command_parses():
    assert runtime.build_parser().parse_args([]).model_sizes == ["base", "large", "LARGE"]
    args = runtime.build_parser().parse_args(["--model_size", "large", "--model_file", "checkpoints/upr_large.pkl"])
    assert args.model_sizes == ["large"] and args.model_file == "checkpoints/upr_large.pkl"
