"""What a run reports: progress lines to stdout and runtime.log, scalars and image sheets to TensorBoard."""
import datetime
import os
import time

import torch

from ..flow_viz import flow_to_color


def format_duration(seconds):
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    return (f"{days}d " if days else "") + time.strftime("%H:%M:%S", time.gmtime(rest))


class Logger:
    """Progress lines to stdout and runtime.log, scalars and images to TensorBoard (rank 0 only)."""

    def __init__(self, exp_dir, enabled):
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(os.path.join(exp_dir, "tensorboard"))
            self.log_file = open(os.path.join(exp_dir, "runtime.log"), "a")

    def line(self, text):
        if self.enabled:
            stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            print(text, flush=True)
            self.log_file.write(f"{stamp} {text}\n")
            self.log_file.flush()

    def scalars(self, step, values):
        if self.enabled:
            for tag, value in values.items():
                self.writer.add_scalar(tag, float(value), step)

    def progress(self, step, steps, result, lr, rate, skipped):
        """One step's line (``step k/n | loss | grad norm | lr | it/s | ETA``) and its training scalars (loss,
        each term, lr, gradient norm, skipped samples); ``result`` is a :class:`~core.training.step.StepResult`."""
        if not self.enabled:
            return
        loss, grad_norm = result.loss.item(), result.grad_norm.item()
        self.scalars(step, {"train/loss": loss, "train/lr": lr, "train/grad_norm": grad_norm,
                            "data/skipped_samples": skipped,
                            **{f"train/loss_{k}": v.item() for k, v in result.terms.items()}})
        self.line(f"step {step}/{steps} | loss {loss:.4f} | grad norm {grad_norm:.3g} | lr {lr:.2e} | "
                  f"{rate:.3f} it/s | ETA {format_duration((steps - step) / max(rate, 1e-9))}"
                  + (f" | {skipped} unreadable samples skipped" if skipped else ""))

    def images(self, step, tag, batch, prediction, bi_flow):
        """One sheet: img0 | prediction | gt | img1 over flow 0->1 | flow 1->0 (first sample of the batch)."""
        if not self.enabled:
            return
        row = lambda *ts: torch.cat([t.detach().float().cpu().clamp(0, 1) for t in ts], 2)
        top = row(batch["img0"][0], prediction[0], batch["gt"][0], batch["img1"][0])
        flows = [torch.from_numpy(flow_to_color(bi_flow[0, i:i + 2].float().cpu())).permute(2, 0, 1) / 255.0
                 for i in (0, 2)]
        bottom = row(*flows, torch.zeros_like(flows[0]), torch.zeros_like(flows[0]))
        self.writer.add_image(tag, torch.cat([top, bottom], 1), step)

    def close(self):
        if self.enabled:
            self.writer.close()
            self.log_file.close()
