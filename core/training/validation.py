"""Validation as a run does it: PSNR / SSIM of the final frame on full validation frames."""
import numpy as np
import torch

from ..frames import pad_multiple, pad_to_multiple
from ..metrics import psnr, ssim


@torch.no_grad()
def validate(model, dataset, args, device, logger=None, step=0):
    """(mean PSNR, mean SSIM, per-sample PSNRs) of the final frame on ``dataset`` (full frames, padded to the
    pyramid's multiple; ``args``: the run's options, of which ``pyr_level`` counts); the first sample's result goes
    to ``logger`` (if given) as "val/images"."""
    model.eval()
    psnrs, ssims = [], []
    pyr_level = args.pyr_level
    multiple = pad_multiple(pyr_level)
    for i in range(len(dataset)):
        sample = {k: v[None].to(device) for k, v in dataset[i].items()}
        h, w = sample["gt"].shape[-2:]
        prediction, bi_flow, _ = model(pad_to_multiple(sample["img0"], multiple),
                                       pad_to_multiple(sample["img1"], multiple), sample["time"].item(),
                                       pyr_level=pyr_level)
        prediction, bi_flow = prediction[..., :h, :w], bi_flow[..., :h, :w]
        psnrs.append(psnr(prediction, sample["gt"]).item())
        ssims.append(ssim(prediction, sample["gt"]).item())
        if i == 0 and logger is not None:
            logger.images(step, "val/images", sample, prediction, bi_flow)
    model.train()
    return float(np.mean(psnrs)), float(np.mean(ssims)), psnrs


def psnr_by_gap(dataset, psnrs):
    """{gap: mean PSNR} of a video validation set's per-sample PSNRs (empty for other datasets)."""
    gaps = [start[2] for start in getattr(dataset, "starts", [])]
    if len(gaps) != len(psnrs) or len(set(gaps)) < 2:
        return {}
    return {gap: float(np.mean([p for g, p in zip(gaps, psnrs) if g == gap])) for gap in sorted(set(gaps))}


def format_gaps(by_gap, unit=""):
    return ", ".join(f"gap {g}: {v:.3f}{unit}" for g, v in by_gap.items())


def validate_run(trainer, dataset, args, device, logger, step):
    """Validate a run's kept weights (the average when there is one) and, beside an average, the raw weights;
    log the scores (line and scalars: val/psnr, val/ssim, val/psnr_gap<g>, val/psnr_raw, val/ssim_raw).
    Returns [(PSNR, weights, label)] of the candidates for best.pkl."""
    kept = trainer.kept_model
    val_psnr, val_ssim, psnrs = validate(kept, dataset, args, device, logger, step)
    by_gap = psnr_by_gap(dataset, psnrs)
    logger.scalars(step, {"val/psnr": val_psnr, "val/ssim": val_ssim,
                          **{f"val/psnr_gap{g}": v for g, v in by_gap.items()}})
    text = f"step {step}: validation PSNR {val_psnr:.3f} dB, SSIM {val_ssim:.4f}"
    if by_gap:
        text += f" ({format_gaps(by_gap)})"
    candidates = [(val_psnr, kept, "")]
    if trainer.ema is not None:   # the raw weights too: they may validate higher than the average
        raw_psnr, raw_ssim, _ = validate(trainer.model, dataset, args, device)
        logger.scalars(step, {"val/psnr_raw": raw_psnr, "val/ssim_raw": raw_ssim})
        text += f" (average of weights; raw weights {raw_psnr:.3f} dB, {raw_ssim:.4f})"
        candidates.append((raw_psnr, trainer.model, " (raw weights)"))
    logger.line(text)
    return candidates
