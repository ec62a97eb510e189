"""``darknet-py detector valid | map | recall DATA CFG WEIGHTS``: the .data file's valid list through
the detector (darknet_py.validate)."""
from __future__ import annotations

import json
import sys

from ..defaults import MAP_IOU, RECALL_IOU, RECALL_NMS, RECALL_THRESH, VALID_NMS, VALID_THRESH
from ..errors import UsageError
from ..files import OutputPlan, note_inputs, write_text
from .args import size_of


def run(args) -> int:
    from .. import validate as va

    if args.images:
        raise UsageError(f"detector {args.action} reads its images from the .data file's valid list; "
                         f"got extra arguments {' '.join(args.images)}")
    width, height = size_of(args)
    common = dict(device=args.device or "cpu", batch=args.batch, width=width, height=height, progress=True,
                  workers=args.workers)
    if args.force_header:  # the library loads without it: the model is loaded here
        from ..detector import load

        common["model"] = load(args.cfg, args.weights, device=args.device or "cpu", width=width, height=height,
                               force_header=True)
    if args.action == "valid":
        run_, written = va.detector_valid(args.data, args.cfg, args.weights, out=args.out, results=args.results,
                                          overwrite=args.overwrite,
                                          # None: the model's Darknet tree's defaults (darknet_py.validate)
                                          thresh=args.thresh, nms=args.nms, **common)
        print(f"{len(run_.images)} images, {run_.count()} detections in {run_.seconds:.1f} s "
              f"({len(run_.images) / max(run_.seconds, 1e-9):.1f} img/s)")
        where = written[0] if len(written) == 1 else f"{len(written)} files in {written[0].parent}"
        print(f"wrote {where}")
        return 0
    if args.action == "map":
        # the named outputs are checked before the run: not a folder or device, not the .data file
        note_inputs((args.data, args.cfg, args.weights), "input")
        plan = OutputPlan()
        for path, what in ((args.report, "the JSON report"), (args.plot, "the PR curves")):
            if path:
                plan.add(path, what)
        res = va.detector_map(args.data, args.cfg, args.weights,
                              thresh=VALID_THRESH if args.thresh is None else args.thresh,
                              nms=VALID_NMS if args.nms is None else args.nms,
                              iou=MAP_IOU if args.iou_thresh is None else args.iou_thresh,
                              conf_thresh=args.conf_thresh, on_bad_label=args.on_bad_label, **common)
        for line in (res.labels.lines() if res.labels else []):
            print(line, file=sys.stderr)
        print(f"{len(res.run.images)} images, {res.run.count()} detections in {res.run.seconds:.1f} s; "
              f"truth: {res.truth_source}")
        for line in res.report.lines():
            print(line)
        if args.plot:
            from ..evaluation import plot_pr_curves

            plot_pr_curves(res.report, args.plot)
            print(f"wrote {args.plot}")
        if args.report:
            write_text(args.report, json.dumps(res.report.as_dict(), indent=1) + "\n")
            print(f"wrote {args.report}")
        return 0
    res = va.detector_recall(args.data, args.cfg, args.weights,
                             thresh=RECALL_THRESH if args.thresh is None else args.thresh,
                             nms=RECALL_NMS if args.nms is None else args.nms,
                             iou=RECALL_IOU if args.iou_thresh is None else args.iou_thresh,
                             on_bad_label=args.on_bad_label, **common)
    print(res.line())
    return 0


__all__ = ["run"]
