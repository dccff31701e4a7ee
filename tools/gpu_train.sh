#!/usr/bin/env bash
# The prepared GPU training burst (docs/gpu_training.md): UPR-Net base fine-tuned from the shipped weights on the
# training pack for --minutes, validated on the held-out clips; results (best.pkl, last.pt, validation.tsv,
# train.log, burst.json) in --out (default $OUT).
#
#     bash tools/gpu_train.sh --minutes 9 --out DIR
#     bash tools/gpu_train.sh --device cpu --quick --out DIR        # a few steps on the CPU
#     bash tools/gpu_train.sh --minutes 9 --resume_from state/last.pt
#
# All options: python -m tools.gpu_burst --help. PYTHON names the interpreter (default python3).
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" -m tools.gpu_burst "$@"
