"""darknet-py: run Darknet's YOLOv3 cfg/weights files in PyTorch, exactly as Darknet does.

>>> import darknet_py
>>> model = darknet_py.load("cfg/yolov3.cfg", "yolov3.weights")
>>> dets = darknet_py.detect(model, "dog.jpg", thresh=0.5)

The public names are imported on first use (PEP 562), so that ``import darknet_py`` (and the
command line's ``--help``, ``--version`` and argument errors) does not pay for importing torch.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the submodule that defines it
_EXPORTS = {"read_cfg": "config", "detect": "detector", "detect_batch": "detector", "load": "detector",
            "CfgError": "errors", "DarknetPyError": "errors", "DataError": "errors", "ImageError": "errors",
            "WeightsError": "errors", "DarknetModel": "graph", "NetworkDef": "graph", "build_model": "graph",
            "parse_network": "graph", "Detections": "postprocess", "load_weights": "weights",
            "save_weights": "weights"}

if TYPE_CHECKING:
    from .config import read_cfg
    from .detector import detect, detect_batch, load
    from .errors import CfgError, DarknetPyError, DataError, ImageError, WeightsError
    from .graph import DarknetModel, NetworkDef, build_model, parse_network
    from .postprocess import Detections
    from .weights import load_weights, save_weights


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        # a submodule not imported yet (``darknet_py.graph`` after a bare ``import darknet_py``, as
        # when this file imported them all)
        if name.startswith("_") or importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return importlib.import_module(f".{name}", __name__)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = ["CfgError", "DarknetModel", "DarknetPyError", "DataError", "Detections", "ImageError", "NetworkDef",
           "WeightsError", "build_model", "detect", "detect_batch", "load", "load_weights", "parse_network",
           "read_cfg", "save_weights", "__version__"]
