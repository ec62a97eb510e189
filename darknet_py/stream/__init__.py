"""Streaming detection over many photos, videos and cameras: the engine of ``darknet-py detect``.

- :mod:`.inputs`: INPUT strings -> items, in order, and their output names;
- :mod:`.feed`: decoded photos (worker processes, the shared photo ring) and video frames;
- :mod:`.runner`: the :class:`Runner` contract and :class:`ModelRunner` (the exact path);
- :mod:`.sinks`: Darknet's lines, JSON lines, YOLO label files, drawn photos, annotated videos;
- :mod:`.engine`: batches in input order, torchrun's sharing out and merging (:func:`run`).

A new output format is a sink in :mod:`.sinks`; a new kind of input an item kind in :mod:`.inputs`.
"""
from ..device import Distributed
from .engine import ROUND_ITEMS, StreamOptions, Summary, run, stream
from .feed import RING_BYTES, RING_MAX_SLOT, RING_MIN_SLOT, FrameReader, PhotoFeed, PhotoRing, default_workers
from .inputs import (IMAGE_EXTENSIONS, LIST_EXTENSIONS, VIDEO_EXTENSIONS, Item, check_output_names, drawn_rel,
                     expand_inputs, video_rel)
from .runner import CustomRunner, ModelRunner, Runner
from .sinks import (FileSink, Outputs, Result, TextRecord, TextWriter, darknet_lines, json_record, legacy_out_path,
                    needs_rgb, plan_outputs, text_record, video_out_path, yolo_lines)

__all__ = ["CustomRunner", "Distributed", "FileSink", "FrameReader", "IMAGE_EXTENSIONS", "Item", "LIST_EXTENSIONS",
           "ModelRunner", "Outputs", "PhotoFeed", "PhotoRing", "RING_BYTES", "RING_MAX_SLOT", "RING_MIN_SLOT",
           "ROUND_ITEMS", "Result", "Runner", "StreamOptions", "Summary", "TextRecord", "TextWriter",
           "VIDEO_EXTENSIONS", "check_output_names", "darknet_lines", "default_workers", "drawn_rel",
           "expand_inputs", "json_record", "legacy_out_path", "needs_rgb", "plan_outputs", "run", "stream",
           "text_record", "video_out_path", "video_rel", "yolo_lines"]
