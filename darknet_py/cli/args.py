"""What every command's parser shares: Darknet's single-dash spellings, the detection and
streaming options, and small argument checks."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..errors import UsageError

# Darknet's single-dash long options, accepted as their double-dash forms.
LONG_OPTIONS = ("thresh", "nms", "names", "out", "json", "device", "debug", "hier", "ext_output", "dont_show",
                "seen-bytes", "allow-trailing-bytes", "partial", "verbose", "no-exif-orientation", "iou_thresh",
                "batch", "results", "points", "plot", "workers", "size", "on-bad-label", "report", "clear",
                "gpus", "num_of_clusters", "width", "height", "max-batches", "backup", "save-every", "seed",
                "quiet", "time-limit", "overwrite", "force-header", "darknet", "map", "map-every", "chart")

# Library keywords (darknet_py.errors.DarknetPyError.option) -> the option that sets them here, with
# the keyword's value in {}. A command whose option differs sets its own in ``flags`` (set_defaults, or
# on the parsed arguments), which main() lays over these.
FLAGS = {"on_bad": "--on-bad-label {}", "max_batches": "--max-batches {}", "recursive": "--recursive",
         "thresh": "--thresh {}", "nms": "--nms {}", "hier_thresh": "--hier {}", "iou": "--iou_thresh {}",
         "conf_thresh": "--conf-thresh {}", "batch": "--batch {}", "workers": "--workers {}",
         "max_frames": "--max-frames {}", "save_every": "--save-every {}", "seed": "--seed {}",
         "time_limit": "--time-limit {}", "k": "--num_of_clusters {}", "top": "--top {}", "opset": "--opset {}",
         "width": "--size {}", "height": "--size {}", "upto": "--partial {}", "train": "--train {}",
         "valid": "--valid {}", "min_side": "--min-side {}", "max_side": "--max-side {}",
         "max_objects": "--max-objects {}", "overwrite": "--overwrite", "limits": "--no-limits",
         "force_header": "--force-header", "darknet": "--darknet {}",
         "map_every": "--map-every {}"}

# ``upto`` where a command has no --partial: the command that loads a backbone.
BACKBONE_UPTO = "--partial {} to `darknet-py inspect-weights` (`detector train` starts from the file as it is)"


def normalise_argv(argv: Sequence[str]) -> list[str]:
    """``-thresh 0.25`` -> ``--thresh 0.25`` for Darknet's long options; nothing after ``--`` (paths)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        name = arg[1:].split("=", 1)[0]
        if arg.startswith("-") and not arg.startswith("--") and name in LONG_OPTIONS:
            out[i] = "-" + arg
    return out


def add_force_header_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force-header", action="store_true",
                   help="read a .weights file whose header looks implausible (negative version, absurd 'seen')")


def add_size_option(p: argparse.ArgumentParser, what: str = "network input size") -> None:
    p.add_argument("--size", type=int, nargs="+", metavar="N", help=f"{what}: --size 416 or --size W H")


def size_of(args) -> tuple[int | None, int | None]:
    """(width, height) of ``--size``, or (None, None)."""
    if not getattr(args, "size", None):
        return None, None
    if len(args.size) > 2:
        raise UsageError(f"--size takes one or two numbers, got {len(args.size)}")
    return args.size[0], args.size[-1]


def add_overwrite_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace existing files among {what} (a file named on the command line is always "
                        "replaced; an input never is)")


def add_limits_option(p: argparse.ArgumentParser) -> None:
    """``--no-limits``: the budgets of darknet_py.limits off (cli.main runs the command inside
    darknet_py.limits.disabled())."""
    p.add_argument("--no-limits", action="store_true",
                   help="go past the memory budgets of darknet_py.limits (weights, activations, checkpoint size)")


def add_darknet_option(p: argparse.ArgumentParser) -> None:
    """``--darknet``: the Darknet tree a model follows (cli.main runs the command inside
    darknet_py.numerics.using())."""
    p.add_argument("--darknet", choices=("auto", "pjreddie", "alexeyab"), default=None,
                   help="whose Darknet to reproduce: pjreddie's (CPU arithmetic, letterboxed photos) or AlexeyAB's "
                        "(GPU batch-norm arithmetic, photos stretched unless the cfg says letter_box=1); default "
                        "auto: AlexeyAB's when the cfg uses anything only its tree reads, and a checkpoint's own")


def check_at_least(*checks: tuple[str, int | None, int]) -> None:
    """Each (flag, value, lowest): a given value below its lowest is an error naming the flag."""
    for flag, value, low in checks:
        if value is not None and value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")


def add_detect_options(p: argparse.ArgumentParser) -> None:
    """Thresholds, outputs and device of ``detect`` and the ``detector`` forms."""
    p.add_argument("--thresh", type=float, default=None,
                   help="score threshold (Darknet's defaults: .5 for test, .005 for valid/map, .001 for recall; "
                        "valid in AlexeyAB's tree: .001)")
    p.add_argument("--nms", type=float, default=None,
                   help="NMS IoU threshold (Darknet: .45 per class; recall: .4 on objectness; valid in AlexeyAB's "
                        "tree: .6)")
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
    add_force_header_option(p)
    p.add_argument("--ext_output", action="store_true", help="also print box coordinates (AlexeyAB's -ext_output)")
    p.add_argument("--dont_show", action="store_true", help="accepted for Darknet compatibility (nothing is shown)")
    p.add_argument("--hier", type=float, default=None, help="YOLO9000's hierarchy threshold for a [region] tree= head "
                   "(Darknet's -hier, default .5); unused by other heads")


def add_stream_options(p: argparse.ArgumentParser, detector: bool) -> None:
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
                            "NAME_FRAME.txt; NAME keeps a folder input's subfolders); boxes clipped to under a pixel "
                            "across are left out")
    p.add_argument("--save-conf", action="store_true", help=t + "--save-txt: the score as a sixth column")
    p.add_argument("--save-dir", metavar="DIR",
                   help=t + "drawn photos DIR/NAME (videos and cameras: the annotated video DIR/NAME.mp4)")
    add_overwrite_option(p, "test: the files written in the --save-txt and --save-dir folders; valid: the result "
                            "files; train: an earlier run's backups" if detector
                         else "the files written in the --save-txt and --save-dir folders")
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


def set_tf32(allow: bool) -> None:
    """PyTorch lets cuDNN convolutions use TF32 by default (10-bit mantissas on Ampere and later):
    about 1e-3 relative error, where Darknet computes in float32. The commands keep float32 unless
    --tf32 is given. (Process-wide settings; the CPU ignores them.)"""
    import torch

    torch.backends.cudnn.allow_tf32 = allow
    torch.backends.cuda.matmul.allow_tf32 = allow


__all__ = ["BACKBONE_UPTO", "FLAGS", "LONG_OPTIONS", "add_detect_options", "add_force_header_option",
           "add_limits_option", "add_overwrite_option",
           "add_size_option", "add_stream_options", "check_at_least", "normalise_argv", "set_tf32", "size_of"]
