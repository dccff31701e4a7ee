"""Training losses: Charbonnier and census (ternary) on the frame, optional flow supervision.

The paper trains on the final frame with Charbonnier + census. ``flow_supervision`` adds a robust loss between
the estimated bi-directional flow of every level and a reference flow (exact for synthetic data, a teacher
such as OpenCV's DIS flow for real video), which speeds up learning on small compute budgets; ``matching``
trains the features that feed the motion estimator's correlation volume directly.
"""
import torch
import torch.nn.functional as F

from .ops import correlation


def charbonnier(prediction, target, eps=1e-6):
    """mean(sqrt((prediction - target)^2 + eps)). Any matching shapes."""
    return torch.sqrt((prediction - target) ** 2 + eps).mean()


def _patch_differences(image, patch_size):
    """N x 3 x H x W in [0, 1] -> N x P^2 x H x W: every neighbour's grey value minus the centre's, over a
    P x P patch (zero beyond the border). Grey in [0, 1]."""
    grey = 0.299 * image[:, 0:1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:3]
    n, _, h, w = grey.shape
    patches = F.unfold(grey, patch_size, padding=patch_size // 2).view(n, patch_size * patch_size, h, w)
    return patches - grey


def _soft_sign(difference):
    """The soft census signature d / sqrt(0.81 + d^2): smooth for small differences, so sensor noise costs
    little. Also the soft sign's square root denominator, which the gradient reuses."""
    root = (difference * difference).add_(0.81).sqrt_()
    return difference / root, root


class _CensusDistance(torch.autograd.Function):
    """Soft Hamming distance sum_k e_k^2 / (0.1 + e_k^2), e = soft_sign(difference) - target_signature, summed
    over the P^2 channels: N x P^2 x H x W -> N x 1 x H x W. Autograd through the same formula runs about ten
    full-size elementwise kernels each way and keeps their results; here the forward makes the per-element
    derivative in place and the backward is one multiply, for the same values (to float rounding)."""

    @staticmethod
    def forward(ctx, difference, target_signature):
        signature, root = _soft_sign(difference)
        error = signature.sub_(target_signature)
        squared = error * error
        denominator = squared + 0.1
        distance = (squared / denominator).sum(1, keepdim=True)
        if ctx.needs_input_grad[0]:
            # d/d(difference) = 0.2 e / (0.1 + e^2)^2 * 0.81 / root^3
            scale = denominator.mul_(denominator).mul_(root).mul_(root).mul_(root)
            derivative = error.mul_(0.162).div_(scale)
            ctx.save_for_backward(derivative)
        return distance

    @staticmethod
    def backward(ctx, grad_distance):
        (derivative,) = ctx.saved_tensors
        return derivative * grad_distance, None


def census(prediction, target, patch_size=7):
    """Ternary census loss (soft Hamming distance of 7 x 7 census signatures), averaged over the frame
    interior (a border of patch_size // 2 pixels, where patches leave the image, is excluded). Gradients flow to
    ``prediction`` only."""
    with torch.no_grad():
        target_signature = _soft_sign(_patch_differences(target, patch_size))[0]
    distance = _CensusDistance.apply(_patch_differences(prediction, patch_size), target_signature)
    r = patch_size // 2
    return distance[..., r:-r, r:-r].mean()


def downsample_flow(flow, size):
    """Area-downsample a flow N x C x H x W (pixels) to ``size`` = (h, w), values rescaled to the new pixels."""
    scale = size[1] / flow.shape[-1]
    return F.adaptive_avg_pool2d(flow, size) * scale


def downsample_reference(reference, valid, size):
    """Area-downsample a reference flow where it is valid: (flow N x 4 x h x w in the new pixels, averaged over the
    valid pixels of each cell; weight N x 4 x h x w, the valid fraction of the cell, per flow channel).

    reference: N x 4 x H x W (pixels); valid: N x 2 x H x W, one mask per direction (0:2 and 2:4 of the flow).
    """
    valid = valid.to(reference.dtype)
    weight = F.adaptive_avg_pool2d(valid, size).repeat_interleave(2, 1)
    flow = downsample_flow(reference * valid.repeat_interleave(2, 1), size) / weight.clamp_min(1e-6)
    return flow, weight


def flow_supervision(bi_flows, reference, valid):
    """Charbonnier distance (pixels) between each level's flow and the reference, mean over levels.

    bi_flows: per-level N x 4 x h x w flows at the level's resolution; reference: N x 4 x H x W at full
    resolution; valid: N x 2 x H x W, 1 where the reference of that direction holds (0 for samples without one).
    Each level's distance is a mean over its valid cells, weighted by their valid fraction.
    """
    if valid.sum() == 0:
        return reference.new_zeros(())
    total = 0
    for flow in bi_flows:
        ref, weight = downsample_reference(reference, valid, flow.shape[-2:])
        scale = reference.shape[-1] / flow.shape[-1]   # compare in full-resolution pixels
        distance = torch.sqrt(((flow.float() - ref) * scale) ** 2 + 1e-6)
        total = total + (distance * weight).sum() / weight.sum()
    return total / len(bi_flows)


def matching(feat0, feat1, reference, valid, max_displacement=4, temperature=5.0):
    """Cross-entropy of the correlation volume against the reference displacement (a feature-matching loss).

    feat0, feat1: N x C x h x w features of both frames at 1/4 of the frames' resolution; reference: N x 4 x H x W
    flow at the frames' resolution (pixels; channels 0:2 from frame 0 to frame 1); valid: N x 2 x H x W (as in
    :func:`flow_supervision`). The flow is area-downsampled to h x w over its valid pixels, converted to feature
    pixels and rounded; the correlation volume (the motion estimator's, 81 displacements for max_displacement 4)
    times ``temperature`` is scored as logits against that displacement, over feature pixels that are mostly
    valid and whose displacement lies within the volume. Untrained features correlate best at the
    true displacement on few pixels; this teaches them to match, so the cost volume becomes informative early.
    """
    d = max_displacement
    size = 2 * d + 1
    flow, weight = downsample_reference(reference, valid, feat0.shape[-2:])
    flow = flow[:, 0:2].round().long()
    inside = (flow.abs() <= d).all(1) & (weight[:, 0] > 0.5)
    if not inside.any():
        return reference.new_zeros(())
    target = ((flow[:, 1] + d) * size + (flow[:, 0] + d)).clamp(0, size * size - 1)
    logits = correlation(feat0.float(), feat1.float(), d) * temperature
    loss = F.cross_entropy(logits, target, reduction="none")
    return (loss * inside).sum() / inside.sum()


LOSS_TYPES = ("charbonnier+census", "charbonnier", "l1")


def frame_loss(prediction, target, loss_type="charbonnier+census"):
    """The photometric loss on the final frame. Returns (total, {name: value})."""
    if loss_type == "l1":
        loss = (prediction - target).abs().mean()
        return loss, {"l1": loss}
    terms = {"charbonnier": charbonnier(prediction, target)}
    if loss_type == "charbonnier+census":
        terms["census"] = census(prediction, target)
    elif loss_type != "charbonnier":
        raise ValueError(f"unknown loss type {loss_type!r}; use one of {LOSS_TYPES}")
    return sum(terms.values()), terms
