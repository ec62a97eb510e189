"""``darknet-py detect CFG WEIGHTS [INPUT ...]`` (and ``detector test``): darknet_py.stream over the inputs."""
from __future__ import annotations

import dataclasses
import os
import sys

from ..defaults import DEFAULT_HIER_THRESH, DEFAULT_NMS, DEFAULT_THRESH
from ..errors import UsageError, escape_controls, spell_option
from .args import FLAGS, add_detect_options, add_stream_options, size_of


def add_parser(sub) -> None:
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
    add_detect_options(p)
    add_stream_options(p, detector=False)


def run(args) -> int:
    return run_detect(args, args.names)


def fast_runner(model, args):
    """A ``darknet_py.fast.FastDetector`` for the precision and graph options (imported only when asked for)."""
    import torch

    try:
        from ..fast import FastDetector
    except ModuleNotFoundError as exc:
        fast = __name__.split(".")[0] + ".fast"
        if exc.name != fast:
            raise
        flags = " ".join(f for f, on in (("--half", args.half), ("--bf16", args.bf16), ("--fast", args.fast),
                                         ("--cuda-graph", args.cuda_graph), ("--compile", args.compile)) if on)
        raise UsageError(f"{flags} needs {fast} (FastDetector), which this installation does not have; "
                         "run without these flags") from None
    dtype = torch.float16 if args.half else torch.bfloat16 if args.bf16 else torch.float32
    return FastDetector(model, dtype=dtype, channels_last=True, cuda_graph=args.cuda_graph, compile=args.compile)


def run_detect(args, names_path: str | None) -> int:
    """detect / detector test; one line per unreadable input, a summary line for several."""
    from .. import stream
    from ..checks import check_range
    from ..config.names import default_names, read_names
    from ..detector import check_detector, load
    from ..device import Distributed

    dist = Distributed()
    thresh = DEFAULT_THRESH if args.thresh is None else args.thresh
    nms = DEFAULT_NMS if args.nms is None else args.nms
    # every number checked (by the library's own checks) before stdin is read or the model loads
    hier = check_range("hier_thresh", DEFAULT_HIER_THRESH if args.hier is None else args.hier)
    width, height = size_of(args)  # detector test's --size (detect has none); checked by load, before the weights
    stream.StreamOptions(thresh=thresh, nms=nms, batch=1 if args.batch is None else args.batch,
                         workers=args.workers or 0, max_frames=args.max_frames)
    inputs, cameras = list(args.images), list(args.camera)
    if not inputs and not cameras:
        if dist.active:
            raise UsageError("under torchrun give the INPUTs on the command line: standard input reaches one "
                             "process only")
        if sys.stdin.isatty():
            print("darknet-py: reading image paths from standard input, one a line (end with Ctrl-D)",
                  file=sys.stderr)
        inputs = [line.strip() for line in sys.stdin if line.strip()]
    video_out, draw_out = args.save_video, args.out
    if args.out is not None and os.path.splitext(args.out)[1].lower() in stream.VIDEO_EXTENSIONS:
        if args.save_video and args.save_video != args.out:
            raise UsageError(f"two annotated videos asked for: -o {args.out} and --save-video {args.save_video}")
        video_out, draw_out = args.out, None
    json_stdout = args.json or args.json_out == "-"
    json_out = None if args.json_out == "-" else args.json_out
    fast = args.fast or args.half or args.bf16 or args.cuda_graph or args.compile
    device = dist.device(args.device)

    dist.start()
    try:
        items = dist.broadcast([dataclasses.replace(it, error=spell_option(it.error, it.option, FLAGS)) if it.error
                                else it for it in stream.expand_inputs(inputs, recursive=args.recursive,
                                                                       cameras=cameras)] if dist.main else None)
        videos = sum(it.kind in ("video", "camera") for it in items)
        photos = sum(it.kind == "image" for it in items)
        if video_out and not videos:
            raise UsageError(f"{video_out}: an annotated video needs a video or camera input")
        # Darknet's form, image files given one by one (or on stdin) and nothing else asked for,
        # draws every photo as it always did: predictions.jpg, or predictions-<stem>.jpg for several.
        plain = (not cameras and [it.name for it in items] == inputs and all(it.kind == "image" for it in items))
        if draw_out is None and plain and not (json_out or args.save_txt or args.save_dir or video_out):
            draw_out = "predictions.jpg"
        outputs = stream.Outputs(json_stdout=json_stdout, json_out=json_out, ext_output=args.ext_output,
                                 save_txt=args.save_txt, save_conf=args.save_conf, save_dir=args.save_dir,
                                 draw_out=draw_out, draw_several=photos > 1, video_out=video_out,
                                 video_several=videos > 1, overwrite=args.overwrite)
        if dist.main:
            from ..files import note_inputs

            note_inputs([p for p in (args.cfg, args.weights, names_path) if p])  # read only later
            stream.plan_outputs(items, outputs)  # refused before the model loads, not after the run

        model = load(args.cfg, args.weights, device=device, seen_bytes=args.seen_bytes, width=width, height=height,
                     force_header=args.force_header)
        check_detector(model)
        for head in model.head_specs:  # Darknet's -hier: YOLO9000's tree threshold
            if hasattr(head, "hier_thresh"):
                head.hier_thresh = hier
        classes = model.netdef.classes
        names = read_names(names_path, classes) if names_path else default_names(classes)
        on_cuda = device.type == "cuda"
        runner = fast_runner(model, args) if fast else stream.ModelRunner(model)
        batch = args.batch if args.batch is not None else 8 if on_cuda else 1
        workers = args.workers if args.workers is not None else stream.default_workers(on_cuda, dist.world)
        opts = stream.StreamOptions(thresh=thresh, nms=nms, batch=batch, workers=workers,
                                    exif_orientation=not args.no_exif_orientation, max_frames=args.max_frames,
                                    pin_memory=on_cuda)
        summary = stream.run(runner, items, opts, outputs, names, classes, out=sys.stdout, err=sys.stderr,
                             progress=args.progress, dist=dist)
    finally:
        dist.close()
    if summary.main and (summary.failed or summary.ok > 1):
        print(f"darknet-py: {summary.ok} ok, {summary.failed} failed ({summary.ok} images in "
              f"{summary.seconds:.2f} s, {summary.images_per_second:.1f} images/s)", file=sys.stderr)
    # several photos and only Darknet's text lines asked for: say where the drawings went, or that none were
    # drawn (a folder, glob or list draws nothing unless asked); a chosen output folder or file says it already
    if summary.main and photos > 1 and not (args.save_dir or args.save_txt or json_out or json_stdout):
        print(f"darknet-py: {drawn_note(draw_out)}", file=sys.stderr)
    return 1 if summary.failed else 0


def drawn_note(draw_out: str | None) -> str:
    """Where the drawn photos of several went (-o, or Darknet's default name), or that none were
    drawn and what draws them."""
    from ..stream.sinks import legacy_out_path

    if draw_out:
        return f"drawn photos written to {escape_controls(legacy_out_path(draw_out, '<stem>', True))}, one per photo"
    return ("no drawn photos written (-o NAME writes NAME-<stem>.jpg for each photo, --save-dir DIR writes them "
            "under DIR)")


__all__ = ["add_parser", "drawn_note", "fast_runner", "run", "run_detect"]
