"""Former home of the batch-wide post-processing, which is now :mod:`darknet_py.postprocess` (and its
geometry table :mod:`darknet_py.transforms`); the old names stay importable from here."""
from .postprocess import StaticPostprocess, batched_nms, postprocess_decoded
from .postprocess import postprocess as postprocess_batch
from .transforms import GEOMETRY_COLUMNS, correct_boxes_rows, geometry_rows, geometry_table, to_photo_xyxy_rows

__all__ = ["GEOMETRY_COLUMNS", "StaticPostprocess", "batched_nms", "correct_boxes_rows", "geometry_rows",
           "geometry_table", "postprocess_batch", "postprocess_decoded", "to_photo_xyxy_rows"]
