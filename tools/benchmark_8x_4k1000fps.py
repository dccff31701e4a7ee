"""X-TEST of X4K1000FPS: 8x interpolation at 4K, every one of the 7 frames scored (paper: L=7, 2 skipped).

    python -m tools.benchmark_8x_4k1000fps --test_data_path DIR    # DIR/<type>/<scene>/*.png, 33 frames each

Subsets are the type folders; "all" is the mean over every interpolated frame (the paper's number). Layout,
options: docs/benchmarks.md.
"""
from core.data.benchmark_sets import xtest
from tools.benchmark_common import BenchmarkSpec, run_main

SPEC = BenchmarkSpec("X-TEST (4K1000FPS, 8x)", xtest, pyr_level=7, nr_lvl_skipped=2,
                     data_flags=("--test_data_path", "--data_root"), overall_name="all", data_workers=1,
                     command="python -m tools.benchmark_8x_4k1000fps", doc=__doc__)


def main(argv=None):
    return run_main(SPEC, argv)


if __name__ == "__main__":
    main()
