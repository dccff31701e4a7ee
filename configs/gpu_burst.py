# The GPU training burst (issue 35, tools/gpu_train.sh): UPR-Net base fine-tuned from the shipped weights on the
# training pack (python -m tools.make_train_pack: ../shared/videos re-encoded) with the paper's batch and crop,
# half synthetic layered motion, bf16 autocast. tools.gpu_burst adds the clips (--video_paths: the pack without
# the held-out clips, --val_video_paths: the three held-out clips), --model_file, --validate_first and the time
# limit. channels_last is a guess for bf16 convolutions on a GPU (tools/gpu_check.sh measures it).
model_size = "base"
pyr_level = 3
dataset = "videos"
val_gaps = [1, 4]
val_stride = 40
max_gap = 8
synthetic_ratio = 0.5
synthetic_max_motion = 64.0
synthetic_min_motion = 4.0
synthetic_static_fraction = 0.1
flow_teacher = "dis_consistent"
flow_loss_weight = 0.12
matching_loss_weight = 0.1
grad_clip = 10.0
steps = 4_000             # the cosine schedule's length; the time limit usually stops the burst first
total_batch_size = 32
init_lr = 1e-4
min_lr = 2e-5
warmup_steps = 100
weight_decay = 1e-4
crop_h = 256
crop_w = 256
loss_type = "charbonnier+census"
amp = "bf16"
channels_last = True
nr_data_worker = 12
save_interval = 100_000   # validation by time instead (--val_minutes)
val_minutes = 3.0
image_interval = 500
log_interval = 50
