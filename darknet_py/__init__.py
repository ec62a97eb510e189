"""darknet-py: run Darknet's YOLOv3 cfg/weights files in PyTorch, exactly as Darknet does.

>>> import darknet_py
>>> model = darknet_py.load("cfg/yolov3.cfg", "yolov3.weights")
>>> dets = darknet_py.detect(model, "dog.jpg", thresh=0.5)
"""
from .config import read_cfg
from .detector import detect, detect_batch, load
from .errors import CfgError, DarknetPyError, DataError, ImageError, WeightsError
from .graph import DarknetModel, NetworkDef, build_model, parse_network
from .postprocess import Detections
from .weights import load_weights, save_weights

__version__ = "0.1.0"

__all__ = ["CfgError", "DarknetModel", "DarknetPyError", "DataError", "Detections", "ImageError", "NetworkDef",
           "WeightsError", "build_model", "detect", "detect_batch", "load", "load_weights", "parse_network",
           "read_cfg", "save_weights", "__version__"]
