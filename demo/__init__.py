"""Demos: interpolate between two images (``python -m demo.interp_imgs``)."""
