"""Data: training/validation triplets (Vimeo90K, own videos, synthetic motion), augmentation, sampling."""
from .sampler import EpochIndexSampler, KeyedConcat
from .synthetic import SyntheticMotion
from .triplets import TripletDataset, VideoTriplets, Vimeo90KSeptuplets, Vimeo90KTriplets

__all__ = ["EpochIndexSampler", "KeyedConcat", "SyntheticMotion", "TripletDataset", "VideoTriplets", "Vimeo90KTriplets",
           "Vimeo90KSeptuplets"]
