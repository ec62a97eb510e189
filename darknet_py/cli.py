"""``darknet-py``: the command line. The only module that prints and chooses exit codes.

Darknet's own spellings work too: single-dash options (``-thresh 0.25``) and
``darknet-py detector test DATA CFG WEIGHTS [IMG]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import List, Optional, Sequence

# Darknet's single-dash long options, accepted as their double-dash forms.
_LONG_OPTIONS = ("thresh", "nms", "names", "out", "json", "device", "debug", "hier", "ext_output", "dont_show",
                 "seen-bytes", "allow-trailing-bytes", "partial", "verbose", "no-exif-orientation", "iou_thresh",
                 "batch", "results", "points", "plot", "workers", "size", "on-bad-label", "report", "clear",
                 "gpus", "num_of_clusters", "width", "height", "max-batches", "backup", "save-every", "seed",
                 "quiet", "time-limit")

_DETECTOR_ACTIONS = ("test", "valid", "map", "recall", "train", "calc_anchors")


def _normalise_argv(argv: Sequence[str]) -> List[str]:
    out = []
    for arg in argv:
        name = arg[1:].split("=", 1)[0]
        if arg.startswith("-") and not arg.startswith("--") and name in _LONG_OPTIONS:
            arg = "-" + arg
        out.append(arg)
    return out


def _add_detect_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--thresh", type=float, default=None,
                   help="score threshold (Darknet's defaults: .5 for test, .005 for valid/map, .001 for recall)")
    p.add_argument("--nms", type=float, default=None,
                   help="NMS IoU threshold (Darknet: .45 per class; recall: .4 on objectness)")
    p.add_argument("-o", "--out", default=None,
                   help="test: drawn image (several inputs: NAME-<stem>.jpg; no extension adds .jpg as Darknet's "
                        "-out, default predictions.jpg for image files given alone; a video extension: the "
                        "annotated video); valid: result file name (coco_results, comp4_det_test_)")
    p.add_argument("--json", action="store_true", help="print one JSON object per image instead of Darknet's lines")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: cpu; train: auto)")
    p.add_argument("--tf32", action="store_true",
                   help="CUDA: let convolutions and matrix products round their inputs to TF32 (faster on Ampere "
                        "and later GPUs; default off: float32 arithmetic, as Darknet's)")
    p.add_argument("--no-exif-orientation", action="store_true",
                   help="use pixels as stored, ignoring the EXIF orientation tag (as stb-built Darknet)")
    p.add_argument("--seen-bytes", type=int, choices=(4, 8), help="override the header's 'seen' width")
    p.add_argument("--ext_output", action="store_true", help="also print box coordinates (AlexeyAB's -ext_output)")
    p.add_argument("--dont_show", action="store_true", help="accepted for Darknet compatibility (nothing is shown)")
    p.add_argument("--hier", type=float, default=0.5, help="YOLO9000's hierarchy threshold for a [region] tree= head "
                   "(Darknet's -hier, default .5); unused by other heads")


def _add_stream_options(p: argparse.ArgumentParser, detector: bool) -> None:
    """The streaming options of ``detect`` (and of ``detector test``, where --batch/--workers exist already)."""
    t = "test: " if detector else ""
    p.add_argument("--recursive", action="store_true", help=t + "folders: also the images of their subfolders")
    p.add_argument("-c", "--camera", type=int, action="append", default=[], metavar="N",
                   help=t + "also read OpenCV camera N (as Darknet's -c); Ctrl-C ends it")
    p.add_argument("--max-frames", type=int, metavar="N", help=t + "at most N frames of each video or camera")
    if not detector:
        p.add_argument("--batch", type=int, metavar="N",
                       help="photos or frames per forward pass (default: 8 on CUDA, 1 on the CPU, where larger "
                            "batches measured no faster)")
        p.add_argument("--workers", type=int, metavar="N",
                       help="photo decoding processes (default: CUDA: CPU count up to 8; CPU: none up to 4 "
                            "cores, else a quarter of the CPU count, at most 4)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help=t + "a progress bar with images/s on stderr (default: only when stderr is a terminal)")
    p.add_argument("--json-out", metavar="FILE",
                   help=t + "one JSON line per photo or frame (image, [frame,] width, height, seconds, detections) "
                            "to FILE ('-': standard output, as --json)")
    p.add_argument("--save-txt", metavar="DIR",
                   help=t + "YOLO label files DIR/NAME.txt, 'class cx cy w h' relative to the photo (video frames: "
                            "NAME_FRAME.txt; NAME keeps a folder input's subfolders)")
    p.add_argument("--save-conf", action="store_true", help=t + "--save-txt: the score as a sixth column")
    p.add_argument("--save-dir", metavar="DIR",
                   help=t + "drawn photos DIR/NAME (videos and cameras: the annotated video DIR/NAME.mp4)")
    p.add_argument("--save-video", metavar="FILE",
                   help=t + "the annotated video of the video or camera input, same fps and size (.mp4, .avi, "
                            ".mkv; several: FILE-NAME.ext); as -o FILE.mp4")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--half", action="store_true", help=t + "fp16 inference (darknet_py.fast.FastDetector)")
    precision.add_argument("--bf16", action="store_true", help=t + "bf16 inference (darknet_py.fast.FastDetector)")
    p.add_argument("--fast", action="store_true",
                   help=t + "darknet_py.fast.FastDetector in float32 (implied by the next three and by --half/--bf16):"
                            " BN folded, on the CPU convs fused with their activations; detections equal the exact"
                            " path's up to float32 summation order")
    p.add_argument("--cuda-graph", action="store_true", help=t + "replay CUDA graphs (darknet_py.fast.FastDetector)")
    p.add_argument("--compile", action="store_true",
                   help=t + "torch.compile the network (darknet_py.fast.FastDetector)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="darknet-py", description="Run Darknet cfg/weights files in PyTorch.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("detect", help="detect objects in photos, folders, globs, image lists, videos and cameras",
                       description="Detect objects in every INPUT, streamed in batches with photos decoded in "
                                   "worker processes; outputs come in input order. Under torchrun the inputs are "
                                   "shared out between the processes and rank 0 writes the merged outputs.",
                       epilog="exit status: 0 when every input ran; 1 when any input could not be read (each is "
                              "named on stderr and skipped, the others run, and the summary line counts them) or "
                              "on an error that stops the run")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("images", nargs="*", metavar="INPUT",
                   help="an image file, a folder (its images, sorted), a glob pattern (quoted), an image list "
                        "(.txt, one path a line), a video file or URL, or a camera index; none: paths are read "
                        "from standard input")
    p.add_argument("--names", help="class names file (default: COCO names for 80-class models)")
    _add_detect_options(p)
    _add_stream_options(p, detector=False)

    p = sub.add_parser("detector", help="Darknet's 'detector' forms: test, valid, map, recall, train DATA CFG "
                                         "[WEIGHTS]; calc_anchors DATA")
    p.add_argument("action", choices=_DETECTOR_ACTIONS,
                   help="test: detect in images; valid: write Darknet's result files for the .data file's valid "
                        "list; map: COCO and VOC metrics against the labels; recall: Darknet's proposal recall; "
                        "train: train on the train list; calc_anchors: k-means anchors of the training boxes")
    p.add_argument("data")
    p.add_argument("cfg", nargs="?")
    p.add_argument("weights", nargs="?", help="(train: optional, a full file, a backbone or a checkpoint)")
    p.add_argument("images", nargs="*", metavar="INPUT",
                   help="test: images, folders, globs, image lists, videos or camera indexes as for `detect` "
                        "(none: read paths from standard input, as Darknet asks); exit status 1 when any failed")
    _add_detect_options(p)
    _add_stream_options(p, detector=True)
    p.add_argument("--batch", type=int, default=8, help="valid/map/recall: images per forward pass")
    p.add_argument("--workers", type=int, help="valid/map/recall: image decoding threads (default: CPU count, max 8)")
    p.add_argument("--size", type=int, nargs="+", metavar="N", help="network input size: --size 416 or --size W H")
    p.add_argument("--results", help="valid: output folder (default: the .data file's results, else results/)")
    p.add_argument("--iou_thresh", type=float, default=None,
                   help="map: IoU a detection needs to count (default .5); recall: default .5")
    p.add_argument("--conf-thresh", type=float, default=0.25,
                   help="map: score for the precision/recall/F1 line (AlexeyAB's conf_thresh .25)")
    p.add_argument("--on-bad-label", choices=("error", "skip"), default="error",
                   help="map/recall: a bad label row stops the run (default) or is skipped and reported")
    p.add_argument("--plot", help="map: write the precision-recall curves to this PNG (needs matplotlib)")
    p.add_argument("--report", help="map: also write every number as JSON to this file")
    p.add_argument("--max-batches", type=int, help="train: stop after this many iterations ([net] max_batches)")
    p.add_argument("--clear", action="store_true", help="train: start at iteration 0 whatever the weights' seen says")
    p.add_argument("--backup", help="train: checkpoint folder (default: the .data file's backup, else backup/)")
    p.add_argument("--save-every", type=int, default=100, help="train: write <cfg>_last.weights every N iterations")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="train: mixed precision (default: on for CUDA; the loss stays fp32)")
    p.add_argument("--seed", type=int, default=0, help="train: seed of the data order and augmentation")
    p.add_argument("--quiet", action="store_true", help="train: no per-head Region lines")
    p.add_argument("--time-limit", type=float, help="train: stop (saved, resumable) after this many seconds")
    p.add_argument("--gpus", help="train: Darknet's -gpus; one index only (use torchrun for several)")
    p.add_argument("--num_of_clusters", type=int, default=9, help="calc_anchors: number of anchors")
    p.add_argument("--width", type=int, default=416, help="calc_anchors: network width")
    p.add_argument("--height", type=int, default=416, help="calc_anchors: network height")

    p = sub.add_parser("classifier", help="Darknet's 'classifier predict DATA CFG WEIGHTS [IMG...]': top-k classes")
    p.add_argument("action", choices=("predict",))
    p.add_argument("data", help=".data file: names= (or labels=) and top=")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("images", nargs="*", help="photos (none: read paths from standard input)")
    p.add_argument("-t", "--top", type=int, default=0, help="how many classes (default: the .data file's top, else 1)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: cpu)")

    p = sub.add_parser("synth", help="write a synthetic shapes dataset in Darknet's layout (images, labels, "
                                      ".data, .names, lists, COCO json)")
    p.add_argument("out", help="dataset folder")
    p.add_argument("--train", type=int, default=200, help="training images")
    p.add_argument("--valid", type=int, default=50, help="validation images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-side", type=int, default=160, help="smallest image side")
    p.add_argument("--max-side", type=int, default=512, help="largest image side")
    p.add_argument("--max-objects", type=int, default=6, help="objects per image, at most")

    p = sub.add_parser("validate-cfg", help="parse and shape-check a cfg; print the layer table")
    p.add_argument("cfg")
    p.add_argument("-v", "--verbose", action="store_true", help="also list the training-only keys kept")
    p.add_argument("--size", type=int, nargs="+", metavar="N", help="input size: --size 416 or --size W H")

    p = sub.add_parser("summary", help="Darknet's layer table with BFLOPs, and the weights-file size the cfg implies")
    p.add_argument("cfg")
    p.add_argument("--size", type=int, nargs="+", metavar="N", help="input size: --size 416 or --size W H")

    p = sub.add_parser("inspect-weights", help="per-layer statistics of a weights file for a cfg")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("--partial", type=int, help="load only the first N layers")
    p.add_argument("--seen-bytes", type=int, choices=(4, 8))

    p = sub.add_parser("export", help="write the model as ONNX, TorchScript or a PyTorch checkpoint, verified")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("--format", choices=("onnx", "torchscript", "pt"), default="onnx")
    p.add_argument("--size", type=int, nargs="+", metavar="N", help="input size: --size 416 or --size W H")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--batch", type=int, default=1, help="fixed batch size (default 1)")
    group.add_argument("--dynamic", action="store_true", help="dynamic batch dimension (ONNX)")
    p.add_argument("--decode", action="store_true",
                   help="one output: x1, y1, x2, y2 (network pixels), objectness, class scores per prediction")
    p.add_argument("--half", action="store_true", help="float16 model and input")
    p.add_argument("--opset", type=int, help="ONNX opset")
    p.add_argument("--image", help="photo to measure the export's difference against PyTorch on")
    p.add_argument("-o", "--output", help="output file (default: the weights' name with .onnx/.torchscript.pt/.pt)")

    p = sub.add_parser("convert", help="a darknet-py checkpoint (.pt) back to Darknet .weights")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--cfg", help="cfg to use instead of the one stored in the checkpoint")

    p = sub.add_parser("partial", help="Darknet's partial: save the first N layers' weights (a backbone)")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("out")
    p.add_argument("n", type=int)
    for p in sub.choices.values():  # --debug after the subcommand too
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return parser


def _set_tf32(allow: bool) -> None:
    """PyTorch lets cuDNN convolutions use TF32 by default (10-bit mantissas on Ampere and later):
    about 1e-3 relative error, where Darknet computes in float32. The commands keep float32 unless
    --tf32 is given. (Process-wide settings; the CPU ignores them.)"""
    import torch

    torch.backends.cudnn.allow_tf32 = allow
    torch.backends.cuda.matmul.allow_tf32 = allow


def _default_workers(on_cuda: bool, world: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))  # the cores this process may use (taskset, containers)
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    cpus = max(1, cpus // world)
    if on_cuda:
        return min(8, cpus)
    # On the CPU the network wants the cores: decoding and letterboxing take a fraction of them.
    # On 2 cores a worker process slowed yolov3-tiny's stream from 13.0 to 11.8 photos/s (medians
    # of 3 interleaved rounds: its work preempts the network's threads): up to 4 cores, none.
    return 0 if cpus <= 4 else min(4, cpus // 4)


def _run_detect(args, names_path: Optional[str]) -> int:
    """detect / detector test: darknet_py.stream over the inputs; one line per unreadable input."""
    from . import stream
    from .detector import check_detector, load
    from .names import default_names, read_names

    dist = stream.Distributed()
    thresh = 0.5 if args.thresh is None else args.thresh
    nms = 0.45 if args.nms is None else args.nms
    for flag, value, low in (("--batch", args.batch, 1), ("--workers", args.workers, 0),
                             ("--max-frames", args.max_frames, 1)):
        if value is not None and value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}")
    inputs, cameras = list(args.images), list(args.camera)
    if not inputs and not cameras:
        if dist.active:
            raise ValueError("under torchrun give the INPUTs on the command line: standard input reaches one "
                             "process only")
        if sys.stdin.isatty():
            print("darknet-py: reading image paths from standard input, one a line (end with Ctrl-D)",
                  file=sys.stderr)
        inputs = [line.strip() for line in sys.stdin if line.strip()]
    video_out, draw_out = args.save_video, args.out
    if args.out is not None and os.path.splitext(args.out)[1].lower() in stream.VIDEO_EXTENSIONS:
        if args.save_video and args.save_video != args.out:
            raise ValueError(f"two annotated videos asked for: -o {args.out} and --save-video {args.save_video}")
        video_out, draw_out = args.out, None
    json_stdout = args.json or args.json_out == "-"
    json_out = None if args.json_out == "-" else args.json_out
    fast = args.fast or args.half or args.bf16 or args.cuda_graph or args.compile
    device = dist.device(args.device)

    dist.start()
    try:
        items = dist.broadcast(stream.expand_inputs(inputs, recursive=args.recursive, cameras=cameras)
                               if dist.main else None)
        videos = sum(it.kind in ("video", "camera") for it in items)
        photos = sum(it.kind == "image" for it in items)
        if video_out and not videos:
            raise ValueError(f"{video_out}: an annotated video needs a video or camera input")
        # Darknet's form, image files given one by one (or on stdin) and nothing else asked for,
        # draws every photo as it always did: predictions.jpg, or predictions-<stem>.jpg for several.
        plain = (not cameras and [it.name for it in items] == inputs and all(it.kind == "image" for it in items))
        if draw_out is None and plain and not (json_out or args.save_txt or args.save_dir or video_out):
            draw_out = "predictions.jpg"
        stream.check_output_names(items, args.save_txt, args.save_dir)

        model = load(args.cfg, args.weights, device=device, seen_bytes=args.seen_bytes)
        check_detector(model)
        for head in model.head_specs:  # Darknet's -hier: YOLO9000's tree threshold
            if hasattr(head, "hier_thresh"):
                head.hier_thresh = args.hier
        classes = model.netdef.classes
        names = read_names(names_path, classes) if names_path else default_names(classes)
        on_cuda = next(model.parameters()).device.type == "cuda"
        if fast:
            runner = stream.fast_runner(model, half=args.half, bf16=args.bf16, cuda_graph=args.cuda_graph,
                                        compile=args.compile)
        else:
            runner = stream.ModelRunner(model)
        batch = args.batch if args.batch is not None else 8 if on_cuda else 1
        workers = args.workers if args.workers is not None else _default_workers(on_cuda, dist.world)
        opts = stream.StreamOptions(thresh=thresh, nms=nms, batch=batch, workers=workers,
                                    exif_orientation=not args.no_exif_orientation, max_frames=args.max_frames,
                                    pin_memory=on_cuda and getattr(runner, "accepts_tensors", False))
        outputs = stream.Outputs(json_stdout=json_stdout, json_out=json_out, ext_output=args.ext_output,
                                 save_txt=args.save_txt, save_conf=args.save_conf, save_dir=args.save_dir,
                                 draw_out=draw_out, draw_several=photos > 1, video_out=video_out,
                                 video_several=videos > 1)
        summary = stream.run(runner, items, opts, outputs, names, classes, out=sys.stdout, err=sys.stderr,
                             progress=args.progress, dist=dist)
    finally:
        dist.close()
    if summary.main and (summary.failed or summary.ok > 1):
        print(f"darknet-py: {summary.ok} ok, {summary.failed} failed ({summary.ok} images in "
              f"{summary.seconds:.2f} s, {summary.images_per_second:.1f} images/s)", file=sys.stderr)
    return 1 if summary.failed else 0


def _size(args):
    if not args.size:
        return None, None
    if len(args.size) > 2:
        raise ValueError(f"--size takes one or two numbers, got {len(args.size)}")
    return args.size[0], args.size[-1]


def _run_detector_eval(args) -> int:
    """detector valid / map / recall: the .data file's valid list through the detector."""
    from . import validate as va

    if args.images:
        raise ValueError(f"detector {args.action} reads its images from the .data file's valid list; "
                         f"got extra arguments {' '.join(args.images)}")
    width, height = _size(args)
    common = dict(device=args.device or "cpu", batch=args.batch, width=width, height=height, progress=True,
                  workers=args.workers)
    if args.action == "valid":
        run, written = va.detector_valid(args.data, args.cfg, args.weights, out=args.out, results=args.results,
                                         thresh=va.VALID_THRESH if args.thresh is None else args.thresh,
                                         nms=va.VALID_NMS if args.nms is None else args.nms, **common)
        print(f"{len(run.images)} images, {run.count()} detections in {run.seconds:.1f} s "
              f"({len(run.images) / max(run.seconds, 1e-9):.1f} img/s)")
        where = written[0] if len(written) == 1 else f"{len(written)} files in {written[0].parent}"
        print(f"wrote {where}")
        return 0
    if args.action == "map":
        res = va.detector_map(args.data, args.cfg, args.weights,
                              thresh=va.VALID_THRESH if args.thresh is None else args.thresh,
                              nms=va.VALID_NMS if args.nms is None else args.nms,
                              iou=0.5 if args.iou_thresh is None else args.iou_thresh,
                              conf_thresh=args.conf_thresh, on_bad_label=args.on_bad_label, **common)
        for line in (res.labels.lines() if res.labels else []):
            print(line, file=sys.stderr)
        print(f"{len(res.run.images)} images, {res.run.count()} detections in {res.run.seconds:.1f} s; "
              f"truth: {res.truth_source}")
        for line in res.report.lines():
            print(line)
        if args.plot:
            from .evaluation import plot_pr_curves

            plot_pr_curves(res.report, args.plot)
            print(f"wrote {args.plot}")
        if args.report:
            Path(args.report).write_text(json.dumps(res.report.as_dict(), indent=1) + "\n")
            print(f"wrote {args.report}")
        return 0
    res = va.detector_recall(args.data, args.cfg, args.weights,
                             thresh=va.RECALL_THRESH if args.thresh is None else args.thresh,
                             nms=va.RECALL_NMS if args.nms is None else args.nms,
                             iou=va.RECALL_IOU if args.iou_thresh is None else args.iou_thresh,
                             on_bad_label=args.on_bad_label, **common)
    print(res.line())
    return 0


def _check_detector_args(args) -> None:
    if args.action == "calc_anchors":
        if args.cfg is not None:
            raise ValueError("detector calc_anchors takes only the .data file")
        return
    if args.cfg is None or (args.weights is None and args.action != "train"):
        raise ValueError(f"detector {args.action} needs DATA CFG WEIGHTS" if args.action != "train"
                         else "detector train needs DATA CFG [WEIGHTS]")
    if args.action == "train" and args.images:
        raise ValueError(f"detector train takes DATA CFG [WEIGHTS]; got extra arguments {' '.join(args.images)}")


def _run_train(args) -> int:
    from .train.trainer import TrainOptions, train

    device = args.device
    if args.gpus is not None:
        gpus = [g for g in args.gpus.split(",") if g.strip()]
        if len(gpus) != 1:
            raise ValueError(f"-gpus {args.gpus}: for several GPUs run the same command under torchrun "
                             "(torchrun --nproc_per_node N -m darknet_py detector train ...)")
        device = f"cuda:{int(gpus[0])}"
    elif device is None:
        device = "auto"  # training uses the GPU when there is one unless told otherwise
    res = train(args.data, args.cfg, args.weights, TrainOptions(
        device=device, workers=4 if args.workers is None else args.workers, clear=args.clear,
        max_batches=args.max_batches, backup=args.backup, save_every=args.save_every, amp=args.amp, seed=args.seed,
        on_bad_label=args.on_bad_label, regions=not args.quiet, time_limit=args.time_limit,
        log=lambda s: print(s, flush=True)))
    if res.final.exists():
        print(f"{res.iterations} iterations in {res.seconds:.1f} s, {res.seen} images seen; final weights {res.final}")
    return 0


def _run_calc_anchors(args) -> int:
    from .anchors import calc_anchors

    res = calc_anchors(args.data, args.num_of_clusters, args.width, args.height, on_bad=args.on_bad_label)
    for line in res.lines():
        print(line)
    return 0


def _run_classifier(args) -> int:
    from .classifier import classify
    from .dataset import read_data_config
    from .detector import load
    from .errors import DarknetPyError
    from .names import read_names

    data = read_data_config(args.data)
    model = load(args.cfg, args.weights, device=args.device or "cpu")
    c, h, w = model.netdef.shapes[-1]
    outputs = c * h * w
    # predict_classifier: names=, else labels= (Darknet's default data/labels.list)
    names_path = data.file("names") or data.file("labels")
    names = read_names(names_path, outputs) if names_path else [str(i) for i in range(outputs)]
    top = args.top or int(data.get("top", "1"))
    images = list(args.images) or [line.strip() for line in sys.stdin if line.strip()]
    failed = 0
    for image in images:
        start = time.perf_counter()
        try:
            pred = classify(model, image, top)
        except DarknetPyError as exc:  # one bad photo is reported; the others still run
            print(f"darknet-py: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{image}: Predicted in {time.perf_counter() - start:f} seconds.", file=sys.stderr)
        for i, score in zip(pred.indices, pred.scores):
            print(f"{score * 100:5.2f}%: {names[i]}")
    return 1 if failed else 0


def _run_synth(args) -> int:
    from .synth import make_dataset

    start = time.perf_counter()
    ds = make_dataset(args.out, train=args.train, valid=args.valid, seed=args.seed, min_side=args.min_side,
                      max_side=args.max_side, max_objects=args.max_objects)
    print(f"wrote {ds.train_images} training and {ds.valid_images} validation images of {len(ds.classes)} classes "
          f"to {ds.root} in {time.perf_counter() - start:.1f} s; data file: {ds.data}")
    return 0


def _run_validate(args) -> int:
    from .graph import parse_network
    from .summary import summarize

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        width, height = _size(args)
        netdef = parse_network(args.cfg, width=width, height=height)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    table = summarize(netdef)
    for line in table.lines(cfg_lines=args.command == "validate-cfg")[:-1]:
        print(line)
    kinds = sorted({netdef.sections[i + 1].kind for i in netdef.head_indices}) or ["yolo"]
    heads = f"{len(netdef.head_indices)} {'/'.join(f'[{k}]' for k in kinds)} heads"
    print(f"{len(netdef.specs)} layers, {heads}, {table.floats} weight floats "
          f"({table.weights_bytes()} bytes in a .weights file)")
    if getattr(args, "verbose", False):
        print(f"[net] line {netdef.net.line}: training keys kept: "
              + (", ".join(f"{k}={v}" for k, v in netdef.net.training.items()) or "none"))
        for section, kind in zip(netdef.sections[1:], netdef.kinds):
            kept = [f"{k}={section.options[k].value}" for k in kind.training_keys if k in section.options]
            if kept:
                print(f"[{section.kind}] line {section.line} (layer {section.index}): training keys kept: "
                      + ", ".join(kept))
        seen = {}
        for spec in netdef.yolo_specs:
            for m in spec.mask:
                if m in seen:
                    print(f"note: anchor {m} is used by the [yolo] layers {seen[m]} and {spec.index}")
                seen[m] = spec.index
    return 0


def _run_inspect(args) -> int:
    from .detector import load
    from .weights import weights_report

    model = load(args.cfg, args.weights, upto=args.partial, seen_bytes=args.seen_bytes)
    h = model.header
    print(f"header: major={h.major} minor={h.minor} revision={h.revision} seen={h.seen} ({h.seen_bytes}-byte seen)")
    for row in weights_report(model):
        stats = "  ".join(f"{k}: mean {v['mean']:+.4g} std {v['std']:.4g}" for k, v in row.items()
                          if isinstance(v, dict))
        print(f"{row['layer']:>4} [{row['kind']}] line {row['line']}: {row['floats']} floats  {stats}")
    return 0


def _run_export(args) -> int:
    from .detector import load
    from .imageio import load_image

    width, height = _size(args)
    model = load(args.cfg, args.weights, width=width, height=height, channels_last=False)
    sample = load_image(args.image)[0] if args.image else None
    suffix = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt": ".pt"}[args.format]
    out = args.output or os.path.splitext(args.weights)[0] + suffix
    if args.format == "pt":
        from .checkpoint import checkpoint_names, load_checkpoint, save_checkpoint
        import torch

        save_checkpoint(model, out)
        back = load_checkpoint(out).eval()
        from .export import sample_input

        x = sample_input(model, sample)
        with torch.no_grad():
            diff = max(float((a - b).abs().max()) for a, b in zip(model(x), back(x)))
        print(f"wrote {out}: PyTorch checkpoint (torch.load(weights_only=True)), "
              f"{len(checkpoint_names(back))} tensors in .weights order, cfg text and header included, "
              f"{os.path.getsize(out) / 1e6:.1f} MB")
        print(f"  input: images {list(x.shape)}; outputs: "
              + ", ".join(f"yolo_{i} {list(o.shape)}" for i, o in zip(back.heads, back(x))))
        print(f"  reloaded checkpoint against the model on the {'given' if sample is not None else 'synthetic'} "
              f"image: largest difference {diff:g}")
        return 0
    from . import export as ex

    opset = {} if args.opset is None else {"opset": args.opset}
    if args.format == "onnx":
        report = ex.export_onnx(model, out, batch=args.batch, dynamic=args.dynamic, decode=args.decode,
                                half=args.half, sample=sample, **opset)
    else:
        if args.dynamic:
            raise ValueError("--dynamic applies to ONNX; a traced TorchScript module takes any batch already")
        report = ex.export_torchscript(model, out, batch=args.batch, decode=args.decode, half=args.half,
                                       sample=sample)
    for line in report.lines():
        print(line)
    return 0


def _run_convert(args) -> int:
    from .checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint, cfg=args.cfg)
    model.save_weights(args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    return 0


def _run_partial(args) -> int:
    from .detector import load

    import dataclasses

    model = load(args.cfg, args.weights)
    # Darknet's partial loads with clear=1: the backbone starts a new training at seen = 0
    model.header = dataclasses.replace(model.header, seen=0)
    model.save_weights(args.out, upto=args.n)
    print(f"saved layers 0..{args.n - 1} of {args.cfg} to {args.out} (seen reset to 0, as Darknet's partial)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = _normalise_argv(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    from .errors import DarknetPyError

    if hasattr(args, "tf32"):
        _set_tf32(args.tf32)

    try:
        if args.command == "detect":
            return _run_detect(args, args.names)
        if args.command == "detector":
            _check_detector_args(args)
        if args.command == "detector" and args.action == "train":
            return _run_train(args)
        if args.command == "detector" and args.action == "calc_anchors":
            return _run_calc_anchors(args)
        if args.command == "detector" and args.action != "test":
            return _run_detector_eval(args)
        if args.command == "synth":
            return _run_synth(args)
        if args.command == "classifier":
            return _run_classifier(args)
        if args.command == "detector":
            from .names import read_data_file, resolve_data_path
            data = read_data_file(args.data)
            names = data.get("names")
            return _run_detect(args, str(resolve_data_path(names, args.data)) if names else None)
        if args.command in ("validate-cfg", "summary"):
            return _run_validate(args)
        if args.command == "inspect-weights":
            return _run_inspect(args)
        if args.command == "partial":
            return _run_partial(args)
        if args.command == "export":
            return _run_export(args)
        if args.command == "convert":
            return _run_convert(args)
    except (DarknetPyError, RuntimeError, ValueError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"darknet-py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `darknet-py detect ... | head`: the reader left; stop quietly like other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
