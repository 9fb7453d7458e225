"""Layers of keras-cvdm: the denoiser U-Net, the schedule networks."""

from keras_cvdm.layers.conv_net import ConvNet
from keras_cvdm.layers.monotone_time import MonotoneTime
from keras_cvdm.layers.tie_mean import TIEMeanNetwork
from keras_cvdm.layers.unet import (
    GammaEmbedding,
    ResidualBlock,
    SpatialAttention,
    UNetDenoiser,
    UNetRegressor,
)

__all__ = [
    "ConvNet",
    "GammaEmbedding",
    "MonotoneTime",
    "ResidualBlock",
    "SpatialAttention",
    "TIEMeanNetwork",
    "UNetDenoiser",
    "UNetRegressor",
]
