# The GPU training burst (issue 35, tools/gpu_train.sh): checkpoint v2's recipe (configs/heldout_clips_cpu.py: from the
# shipped weights, half synthetic layered motion, DIS flow teacher where consistent, bf16) with the paper's batch and
# crop on a GPU. tools.gpu_burst adds the clips (--video_paths: the training pack without the held-out clips,
# --val_video_paths: the three held-out clips), --model_file, --validate_first and the time limit. channels_last is a
# guess for bf16 convolutions on a GPU (tools/gpu_check.sh measures it).
import os as _os
import runpy as _runpy

globals().update({k: v for k, v in _runpy.run_path(_os.path.join(_os.path.dirname(__file__),
                                                                  "heldout_clips_cpu.py")).items()
                  if not k.startswith("_")})
video_paths = []          # given by tools.gpu_burst (pack clips)
val_video_paths = []
synthetic_static_fraction = 0.1
steps = 4_000             # the cosine schedule's length; the time limit usually stops the burst first
total_batch_size = 32
warmup_steps = 100
crop_h = 256
crop_w = 256
nr_data_worker = 12
save_interval = 100_000   # validation by time instead (--val_minutes)
val_minutes = 3.0
image_interval = 500
log_interval = 50
