# The paper's recipe for UPR-Net LARGE on Vimeo90K triplets (any option of tools/train.py can be set here;
# the command line overrides this file). Multi-GPU: torchrun --nproc_per_node=4 -m tools.train --config THIS
model_size = "LARGE"
pyr_level = 3
dataset = "vimeo90k_triplet"
steps = 800_000
total_batch_size = 32          # split over the processes: batch_size = 32 / world size
init_lr = 2e-4
min_lr = 2e-5
warmup_steps = 2000
weight_decay = 1e-4
crop_h = 256
crop_w = 256
loss_type = "charbonnier+census"
save_interval = 10_000
val_samples = 0                # the whole Vimeo90K test list (3782 triplets)
