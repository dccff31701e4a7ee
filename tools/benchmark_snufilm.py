"""SNU-FILM: PSNR/SSIM of the middle frame per difficulty (paper: pyramid level 5).

    python -m tools.benchmark_snufilm --data_root DIR      # DIR/eval_modes/test-{easy,medium,hard,extreme}.txt

Layout (list paths relative to DIR, a leading data/SNU-FILM/ dropped), options: docs/benchmarks.md.
"""
from core.data.benchmark_sets import SNUFILM_SUBSETS, snufilm
from tools.benchmark_common import BenchmarkSpec, run_main

SPEC = BenchmarkSpec("SNU-FILM", snufilm, pyr_level=5, nr_lvl_skipped=0, subsets=SNUFILM_SUBSETS,
                     command="python -m tools.benchmark_snufilm", doc=__doc__)


def main(argv=None):
    return run_main(SPEC, argv)


if __name__ == "__main__":
    main()
