"""Darknet's default thresholds, each command's, defined once (plain numbers, no torch: the
command line, the library and the pure-data evaluation all read them here)."""

# `darknet detect` / `detector test` (examples/darknet.c, test_detector): thresh .5, nms .45.
DEFAULT_THRESH = 0.5
DEFAULT_NMS = 0.45
# `detector valid` / `map` (validate_detector): objectness .005, nms .45.
VALID_THRESH = 0.005
VALID_NMS = 0.45
# AlexeyAB's validate_detector: thresh .001, nms .6 (its `detector map` keeps .005 and .45).
VALID_THRESH_ALEXEYAB = 0.001
VALID_NMS_ALEXEYAB = 0.6
# `detector recall` (validate_detector_recall): thresh .001, objectness NMS .4, a truth found at IoU > .5.
RECALL_THRESH = 0.001
RECALL_NMS = 0.4
RECALL_IOU = 0.5
# `detector map`: a detection counts at IoU .5; AlexeyAB's precision/recall line at conf_thresh .25.
MAP_IOU = 0.5
MAP_CONF_THRESH = 0.25
# YOLO9000's hierarchy threshold (Darknet's -hier, default .5).
DEFAULT_HIER_THRESH = 0.5

__all__ = ["DEFAULT_HIER_THRESH", "DEFAULT_NMS", "DEFAULT_THRESH", "MAP_CONF_THRESH", "MAP_IOU", "RECALL_IOU",
           "RECALL_NMS", "RECALL_THRESH", "VALID_NMS", "VALID_NMS_ALEXEYAB", "VALID_THRESH", "VALID_THRESH_ALEXEYAB"]
