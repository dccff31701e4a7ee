"""One training step: forward under autocast, the losses, backward with loss scaling, clipping, AdamW, the weight
average. ``tools.train`` and ``tools.training_speed`` both run it, so the speed measured is the speed trained at."""
import argparse
from dataclasses import dataclass

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..device import default_memory_format
from ..losses import LOSS_TYPES, flow_supervision, frame_loss, matching

AUTOCAST_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""--amp: the autocast precision of the forward pass ("none": exact float32)."""


def add_step_arguments(group):
    """The options of :class:`TrainingStep` (one set, with the same defaults, for every tool that runs the step)."""
    group.add_argument("--loss_type", default="charbonnier+census", choices=LOSS_TYPES)
    group.add_argument("--flow_loss_weight", type=float, default=0.0,
                       help="weight of flow supervision (exact flow of synthetic data, --flow_teacher on real data)")
    group.add_argument("--flow_loss_decay_steps", type=int, default=0,
                       help="the flow weight decays linearly to 0 over this many steps (0: constant)")
    group.add_argument("--matching_loss_weight", type=float, default=0.0,
                       help="weight of the feature-matching loss (the flow references of --flow_loss_weight; 0: off)")
    group.add_argument("--grad_clip", type=float, default=0.0, help="max gradient norm (0: off)")
    group.add_argument("--ema_decay", type=float, default=0.0,
                       help="keep an exponential moving average of the weights, e.g. 0.999 (0: off)")
    group.add_argument("--amp", default="none", choices=list(AUTOCAST_DTYPES),
                       help="autocast precision; 'none' is exact float32")
    group.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=None,
                       help="channels_last tensors (default: on for the CPU, where oneDNN convolutions are faster)")


def memory_format_for(channels_last, device):
    """The tensors' memory format: channels_last when asked, or when not said (None) the device's default
    (:func:`core.device.default_memory_format`: channels_last on the CPU)."""
    if channels_last is None:
        return default_memory_format(device)
    return torch.channels_last if channels_last else torch.contiguous_format


@dataclass
class StepResult:
    loss: torch.Tensor        # the weighted total
    terms: dict               # each loss term: charbonnier, census or l1; flow, matching when weighted
    grad_norm: torch.Tensor   # before clipping (always computed; clipped only with grad_clip > 0)
    prediction: torch.Tensor  # N x 3 x H x W
    bi_flow: torch.Tensor     # N x 4 x H x W


class TrainingStep:
    """Holds the model, its optimizer, the fp16 loss scaler and the weight average; calling it runs one step.

    ``network`` runs the forward pass: the model itself, or its DistributedDataParallel wrapper (set it once the
    wrapper exists). The scaler is enabled for ``amp="fp16"`` only; ``ema`` (an ``AveragedModel``: the first update
    copies the weights, later ones move them ``1 - ema_decay`` towards the model) exists when ``ema_decay`` > 0.
    """

    def __init__(self, model, optimizer, loss_type="charbonnier+census", flow_loss_weight=0.0,
                 flow_loss_decay_steps=0, matching_loss_weight=0.0, grad_clip=0.0, amp="none", ema_decay=0.0,
                 memory_format=torch.contiguous_format):
        if amp not in AUTOCAST_DTYPES:
            raise ValueError(f"amp must be one of {', '.join(AUTOCAST_DTYPES)}, got {amp!r}")
        if ema_decay and not 0 < ema_decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1), got {ema_decay}")
        self.model = self.network = model
        self.optimizer = optimizer
        self.device = next(model.parameters()).device
        self.loss_type, self.grad_clip, self.memory_format = loss_type, grad_clip, memory_format
        self.flow_loss_weight, self.flow_loss_decay_steps = flow_loss_weight, flow_loss_decay_steps
        self.matching_loss_weight = matching_loss_weight
        self.autocast_dtype = AUTOCAST_DTYPES[amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")
        self.ema = None
        if ema_decay:
            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)

    @classmethod
    def from_args(cls, model, optimizer, args):
        """From parsed :func:`add_step_arguments` options (``args.channels_last`` None: the device's default)."""
        return cls(model, optimizer, args.loss_type, args.flow_loss_weight, args.flow_loss_decay_steps,
                   args.matching_loss_weight, args.grad_clip, args.amp, args.ema_decay,
                   memory_format_for(args.channels_last, next(model.parameters()).device))

    @property
    def kept_model(self):
        """The weights to validate and keep: the average when there is one, else the model."""
        return self.model if self.ema is None else self.ema.module

    def flow_weight(self, step):
        if not self.flow_loss_decay_steps:
            return self.flow_loss_weight
        return self.flow_loss_weight * max(0.0, 1 - step / self.flow_loss_decay_steps)

    def __call__(self, batch, step, lr=None):
        """One optimisation step on ``batch`` (tensors on the model's device: img0, img1, gt, time; flow and
        flow_valid for the flow and matching losses) at ``step`` (0-based; for the flow weight's decay), with
        learning rate ``lr`` (None: leave it). Returns a :class:`StepResult`."""
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        img0 = batch["img0"].contiguous(memory_format=self.memory_format)
        img1 = batch["img1"].contiguous(memory_format=self.memory_format)
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            prediction, bi_flow, extra = self.network(img0, img1, batch["time"])
        loss, terms = frame_loss(prediction.float(), batch["gt"], self.loss_type)
        flow_weight = self.flow_weight(step)
        if flow_weight > 0:
            terms["flow"] = flow_supervision(extra["bi_flows"], batch["flow"], batch["flow_valid"])
            loss = loss + flow_weight * terms["flow"]
        if self.matching_loss_weight > 0:
            terms["matching"] = matching(*extra["features"], batch["flow"], batch["flow_valid"])
            loss = loss + self.matching_loss_weight * terms["matching"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)     # the norm is returned always; clipped only with grad_clip > 0
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                   self.grad_clip if self.grad_clip > 0 else float("inf"))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return StepResult(loss, terms, grad_norm, prediction, bi_flow)
