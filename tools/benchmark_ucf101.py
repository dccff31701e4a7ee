"""UCF101 (the DVF triplets): PSNR/SSIM of the middle frame (paper: pyramid level 3).

    python -m tools.benchmark_ucf101 --data_root DIR       # DIR/<triplet>/frame_00.png, frame_01_gt.png, frame_02.png

Layout, options, reference methods: docs/benchmarks.md.
"""
from core.data.benchmark_sets import ucf101
from tools.benchmark_common import BenchmarkSpec, run_main

SPEC = BenchmarkSpec("UCF101", ucf101, pyr_level=3, nr_lvl_skipped=0,
                     command="python -m tools.benchmark_ucf101", doc=__doc__)


def main(argv=None):
    return run_main(SPEC, argv)


if __name__ == "__main__":
    main()
