"""The motion network: per-frame pyramid, local motion cues, coarse-to-fine residual cues, CGU upsampling."""

from scattermotion.model.config import MotionConfig
from scattermotion.model.network import MotionNet, MotionOutput, build_motion_net
from scattermotion.model.weights import load_weights, save_weights

__all__ = ["MotionConfig", "MotionNet", "MotionOutput", "build_motion_net", "save_weights", "load_weights"]
