"""UPR-Net model parts: feature pyramid, motion estimator, synthesis network, and the recurrent whole."""
from .feature_pyramid import FeaturePyramid
from .motion_estimator import MotionEstimator
from .synthesis import SynthesisNetwork
from .upr_net import LevelMotion, UPRNet

__all__ = ["FeaturePyramid", "MotionEstimator", "SynthesisNetwork", "UPRNet", "LevelMotion"]
