"""Vimeo90K triplet test: PSNR/SSIM of the middle frame (paper: pyramid level 3).

    python -m tools.benchmark_vimeo90k --data_root DIR     # DIR/tri_testlist.txt, DIR/sequences/...

Layout, options, reference methods: docs/benchmarks.md.
"""
from core.data.benchmark_sets import vimeo90k
from tools.benchmark_common import BenchmarkSpec, run_main

SPEC = BenchmarkSpec("Vimeo90K", vimeo90k, pyr_level=3, nr_lvl_skipped=0,
                     command="python -m tools.benchmark_vimeo90k", doc=__doc__)


def main(argv=None):
    return run_main(SPEC, argv)


if __name__ == "__main__":
    main()
