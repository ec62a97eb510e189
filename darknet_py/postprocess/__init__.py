"""Darknet's detection post-processing, as tensor code on the tensors' device, for a whole batch.

- :mod:`.thresholds`: the default thresholds of every command and Darknet's two strict comparisons;
- :mod:`.nms`: per-class (DIoU) NMS, ``do_nms_sort``, for a batch;
- :mod:`.batch`: head outputs -> :class:`Detections` per photo (thresholds, box correction, NMS);
- :mod:`.static`: the same contract with static shapes, for CUDA graphs;
- :mod:`.detections`: :class:`Detections`.
"""
from .batch import nms_policy, postprocess, postprocess_decoded
from .detections import Detections, detections_to
from .nms import batched_nms, darknet_nms, suppress_on_pairs
from .static import StaticPostprocess
from .thresholds import DEFAULT_NMS, DEFAULT_THRESH, VALID_NMS, VALID_THRESH, candidate_mask, class_scores

__all__ = ["DEFAULT_NMS", "DEFAULT_THRESH", "Detections", "StaticPostprocess", "VALID_NMS", "VALID_THRESH",
           "batched_nms", "candidate_mask", "class_scores", "darknet_nms", "detections_to", "nms_policy",
           "postprocess", "postprocess_decoded", "suppress_on_pairs"]
