"""``darknet-py export``: write a model for another runtime, run the file there, and report.

Every format is one entry of darknet_py.export.backends.BACKENDS; this module only turns flags
into the library's keywords, plans the outputs before any work and prints the reports.
"""
from __future__ import annotations

import os

from ..errors import ExportError, UsageError, escape_controls
from .args import add_force_header_option, add_overwrite_option, add_size_option, size_of
from .models import _plan

# The formats and the suffix of each default file name (torch-free: `--help` imports no torch;
# tests/cli checks it against darknet_py.export.backends.BACKENDS).
EXPORT_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt": ".pt", "tflite": ".tflite",
                   "openvino": ".openvino.xml", "ncnn": ".ncnn.param", "tensorrt": ".engine"}
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="convert the model for another runtime, run it there and compare it with "
                                      "PyTorch (" + ", ".join(EXPORT_SUFFIXES) + ")")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("--format", choices=tuple(EXPORT_SUFFIXES), default="onnx")
    add_size_option(p, "input size")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--batch", type=int, default=1, help="fixed batch size (default 1)")
    group.add_argument("--dynamic", action="store_true",
                       help="dynamic batch, height and width (ONNX, TorchScript): any size divisible by the "
                            "network's stride")
    p.add_argument("--decode", action="store_true",
                   help="one output: x1, y1, x2, y2 (network pixels), objectness, class scores per prediction")
    p.add_argument("--nms", action="store_true",
                   help="end-to-end graph: decode, Darknet's thresholds and per-class NMS inside; outputs "
                        "num_dets, det_boxes, det_scores, det_classes (ONNX, TorchScript)")
    p.add_argument("--letterbox", action="store_true",
                   help="with --nms: uint8 HxWx3 RGB photos in, Darknet's letterbox inside, boxes in photo pixels")
    p.add_argument("--max-det", type=int, default=None, help="with --nms: detections kept per photo (default 100)")
    p.add_argument("--thresh", type=float, default=None,
                   help="score threshold of --nms graphs and of the comparison with PyTorch (default .5, as detect)")
    p.add_argument("--nms-thresh", type=float, default=None,
                   help="NMS IoU threshold of --nms graphs and of the comparison (default .45)")
    p.add_argument("--half", action="store_true", help="float16 model and input (same as --precision fp16)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="arithmetic of the converted model (default fp32; TensorRT fp16; which a format offers: "
                        "README)")
    p.add_argument("--calibrate", metavar="DATA",
                   help="int8: calibrate on photos of this Darknet .data file's train list (else valid)")
    p.add_argument("--calib-images", type=int, default=None, help="int8: photos to calibrate on (default 64)")
    p.add_argument("--keep-float", type=int, nargs="+", metavar="LAYER", default=(),
                   help="int8: Darknet layer indices kept in float besides the heads and the layers the "
                        "sensitivity pass keeps")
    p.add_argument("--min-layer-db", type=float, default=None,
                   help="int8: a layer whose quantisation alone leaves the heads below this signal to noise (dB) "
                        "stays float (default 25; higher keeps more accuracy, lower more speed)")
    p.add_argument("--opset", type=int, help="ONNX opset")
    p.add_argument("--image", nargs="+", metavar="PHOTO",
                   help="photos to compare the converted model with PyTorch on (the first is also the export's "
                        "own check; default: a synthetic picture)")
    p.add_argument("--data", metavar="DATA",
                   help="also compare mAP@0.5 and COCO AP before and after, on this .data file's valid list")
    p.add_argument("--report", metavar="FILE", help="write the conversion report as JSON")
    p.add_argument("-o", "--output", help="output file (default: the weights' name with the format's suffix)")
    add_force_header_option(p)
    add_overwrite_option(p, "the default output name (-o names a file that is replaced)")
    p.set_defaults(flags={"max_det": "--max-det {}", "iou": "--nms-thresh {}", "calib_images": "--calib-images {}",
                          "calibration": "--calibrate {}", "nms": "--nms", "min_layer_db": "--min-layer-db {}",
                          "dynamic": "--dynamic", "decode": "--decode", "letterbox": "--letterbox",
                          "precision": "--precision {}", "batch": "--batch {}"})


def _precision(args) -> str | None:
    """--precision / --half; None: the format's first (fp32, or fp16 for TensorRT)."""
    if args.half and args.precision not in (None, "fp16"):
        raise UsageError(f"--half and --precision {args.precision} disagree")
    return "fp16" if args.half else args.precision


def _options(args, precision: str, sample):
    """The flags as darknet_py.export.backends.ExportOptions (each format refuses what it does not take)."""
    from ..export.backends import ExportOptions

    if (args.calibrate or args.calib_images is not None or args.keep_float or args.min_layer_db is not None) \
            and precision != "int8":
        raise UsageError("--calibrate, --calib-images, --keep-float and --min-layer-db apply to --precision int8")
    if not args.nms and (args.letterbox or args.max_det is not None):
        raise UsageError("--letterbox and --max-det apply to --nms graphs")
    # --thresh / --nms-thresh also set the comparison's thresholds: only an --nms graph takes them
    nms_only = {"thresh": args.thresh, "iou": args.nms_thresh} if args.nms else {}
    return ExportOptions(precision=precision, batch=args.batch, dynamic=args.dynamic, decode=args.decode,
                         nms=args.nms, letterbox=args.letterbox, max_det=args.max_det, opset=args.opset,
                         calibration=args.calibrate, calib_images=args.calib_images,
                         keep_float=tuple(args.keep_float), min_layer_db=args.min_layer_db, sample=sample,
                         **nms_only)


def run(args) -> int:
    from .. import export as ex
    from ..detector import load
    from ..export.backends import backend
    from ..imageio import load_image

    ex.check_export_options(batch=args.batch, opset=args.opset)  # before the model loads
    precision = _precision(args)
    images = list(args.image or [])
    width, height = size_of(args)
    out = args.output or os.path.splitext(args.weights)[0] + EXPORT_SUFFIXES[args.format]
    # a default name made from the weights' is replaced only with --overwrite; never the inputs
    # (`export OTHER.cfg m.pt --format pt` would otherwise rewrite m.pt)
    from ..export.backends import companions
    named = args.output is not None or args.overwrite
    outputs = [(out, f"the {args.format} export", named)]
    outputs += [(f, f"the {args.format} export's weights", named) for f in companions(args.format, out)]
    if args.report:
        outputs.append((args.report, "the conversion report", True))
    _plan((args.cfg, args.weights, *images, args.calibrate, args.data), outputs)
    be = backend(args.format)
    precision = precision or be.precisions[0]
    photos = [(p, load_image(p)[0]) for p in images]  # before the model: a bad photo fails fast
    sample = photos[0][1] if photos else None
    options = _options(args, precision, sample)
    be.check(options)  # an option the format does not take: refused before the model loads
    model = load(args.cfg, args.weights, width=width, height=height, channels_last=False,
                 force_header=args.force_header)
    try:
        report = be.write_file(model, out, options)
    except ExportError as exc:
        if images:  # the library knows the photo only as pixels
            raise ExportError(str(exc).replace("on the sample image", f"on {images[0]}")) from exc
        raise
    if images:
        report.sample_name = images[0]
    elif not report.sample_name:  # a backend that checked on photos of its own (int8: the .data list) named them
        report.sample_name = "the synthetic sample image"
    for line in report.lines():
        print(escape_controls(line))
    if images or args.report or args.data:
        conv = conversion_report(be, model, out, report, options, photos, precision, args)
        for line in conv.lines():
            print(escape_controls(line))
        if args.report:
            from ..export.report import write_report
            write_report(args.report, [conv])
            print(f"wrote {args.report}")
    return 0


def conversion_report(be, model, out: str, report, options, photos, precision: str, args):
    from ..export.check import synthetic_image
    from ..export.report import ConversionReport
    from ..export.int8 import INT8_MATCH_IOU
    from ..export.verify import MATCH_IOU, verify_detector, verify_runner
    from ..postprocess import DEFAULT_NMS, DEFAULT_THRESH

    thresh = DEFAULT_THRESH if args.thresh is None else args.thresh
    nms = DEFAULT_NMS if args.nms_thresh is None else args.nms_thresh
    loaded = be.open_file(out, model, options)
    if not photos and (args.data or args.calibrate):
        # real photos say more than the synthetic picture: a few of the valid list (else train)
        from ..export.calibrate import listed_photos, load_photos
        photos = load_photos(listed_photos(args.data or args.calibrate, "valid" if args.data else None, limit=8))
    photos = photos or [("synthetic sample image", synthetic_image())]
    # int8 moves boxes by a pixel or two: "the same box" is IoU >= .9 there (see darknet_py.export.int8)
    iou = INT8_MATCH_IOU if precision == "int8" else MATCH_IOU
    if loaded.runner is not None:
        verification = verify_runner(model, loaded.runner, photos, thresh=thresh, nms=nms, iou=iou)
    else:
        from ..export.e2e import DEFAULT_MAX_DET
        max_det = (options.max_det or DEFAULT_MAX_DET) if options.nms else None
        verification = verify_detector(model, loaded.detector, photos, thresh=thresh, nms=nms, max_det=max_det,
                                       iou=iou)
    accuracy = None
    notes = []
    if args.data:
        if loaded.runner is None:
            notes.append("--data: mAP is measured on graphs of raw heads; this graph gives final detections")
        else:
            from ..export.report import accuracy_entry
            accuracy = accuracy_entry(model, loaded.runner, args.data)
    from ..export.backends import companions
    files = [out] + companions(be.name, out)
    size = sum(os.path.getsize(f) for f in files if os.path.exists(f))
    return ConversionReport(be.name, files, precision, loaded.runtime, size, verification, accuracy, notes)


__all__ = ["EXPORT_SUFFIXES", "PRECISIONS", "add_parser", "conversion_report", "run"]
