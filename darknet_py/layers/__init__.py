"""Layer kinds, one module each; importing this package registers them all."""
from . import convolutional, maxpool, route, shortcut, upsample, yolo  # noqa: F401  (registration)
from .registry import LAYERS, LayerKind, LayerSpec, Shape

__all__ = ["LAYERS", "LayerKind", "LayerSpec", "Shape"]
