"""Layer kinds, one module each; importing this package registers them all."""
from . import (avgpool, connected, convolutional, cost, dropout, maxpool, route, shortcut,  # noqa: F401  (registration)
               softmax, upsample, yolo)
from .registry import LAYERS, LayerKind, LayerSpec, Shape

__all__ = ["LAYERS", "LayerKind", "LayerSpec", "Shape"]
