# The recipe of checkpoint v2 (issue 26): UPR-Net base on all of ../shared/videos except three whole clips held
# out for validation (different kinds: underwater footage with fast motion, a rendered cartoon with a moving
# camera, a face), mixed half-and-half with synthetic layered-motion triplets (exact flow, log-uniform motion
# lengths). Validation and checkpoint choice: consecutive triplets (gap 1) and gap-4 triplets of the held-out
# clips. Frames are read lazily from the on-disk cache (tools.prepare_videos), so memory stays flat.
# Continue from the shipped weights with a fresh optimizer: see docs/checkpoint.md for the commands run.
model_size = "base"
pyr_level = 3
dataset = "videos"
video_paths = ["../shared/videos"]
val_video_paths = ["../shared/videos/diver.mov", "../shared/videos/pampi_tour.mp4",
                   "../shared/videos/laughing_pexels.mp4"]
val_gaps = [1, 4]
val_stride = 40
max_gap = 8
synthetic_ratio = 0.5
synthetic_max_motion = 64.0
synthetic_min_motion = 4.0
flow_teacher = "dis_consistent"
flow_loss_weight = 0.12
flow_loss_decay_steps = 0
matching_loss_weight = 0.1
grad_clip = 10.0
steps = 2_000
batch_size = 8
init_lr = 1e-4
min_lr = 2e-5
warmup_steps = 50
weight_decay = 1e-4
crop_h = 192
crop_w = 192
loss_type = "charbonnier+census"
amp = "bf16"
channels_last = True
nr_data_worker = 1
save_interval = 250
image_interval = 250
log_interval = 10
