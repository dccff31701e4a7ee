"""Training: the step (:class:`TrainingStep`), processes, the training state, logging, validation and data, as
``tools.train`` uses them (``tools.training_speed`` times the same step)."""
from .calibration import calibrate_feature_scale
from .data import SkipCounter, build_datasets, read_batches, training_loader
from .distributed import StopSignals, distribute, link_train_log, process_ranks, seed_everything, \
    setup_distributed, stop_vote
from .logging import Logger, format_duration
from .state import compact_training_state, restore_training_state, save_training_state
from .step import AUTOCAST_DTYPES, StepResult, TrainingStep, add_step_arguments, memory_format_for
from .validation import format_gaps, psnr_by_gap, validate, validate_run

__all__ = ["calibrate_feature_scale", "SkipCounter", "build_datasets", "read_batches", "training_loader",
           "StopSignals", "distribute", "link_train_log", "process_ranks", "seed_everything", "setup_distributed",
           "stop_vote", "Logger", "format_duration", "compact_training_state", "restore_training_state",
           "save_training_state",
           "AUTOCAST_DTYPES", "StepResult", "TrainingStep", "add_step_arguments", "memory_format_for",
           "format_gaps", "psnr_by_gap", "validate", "validate_run"]
