"""Moved: the head decode lives with each head kind (darknet_py.layers.yolo.YoloDecode, ...), and
``decode`` of all heads is darknet_py.layers.head.decode_heads."""
from .layers.head import decode_heads as decode

__all__ = ["decode"]
