"""Learning-rate schedule: linear warm-up, then cosine decay to a floor."""
import math


def learning_rate(step, total_steps, init_lr=2e-4, min_lr=2e-5, warmup_steps=2000):
    """Rate for ``step`` (0-based): init_lr * (step + 1) / warmup_steps during warm-up, then a half cosine
    from init_lr down to min_lr, reached at ``total_steps``."""
    if step < warmup_steps:
        return init_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (init_lr - min_lr) * (1 + math.cos(math.pi * progress))
