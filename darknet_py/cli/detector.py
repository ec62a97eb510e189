"""Darknet's ``detector`` forms: ``test``, ``valid``, ``map``, ``recall``, ``train DATA CFG [WEIGHTS]``
and ``calc_anchors DATA``."""
from __future__ import annotations

import argparse

from ..defaults import MAP_CONF_THRESH
from ..errors import UsageError
from . import detect, evaluate, train
from .args import add_detect_options, add_size_option, add_stream_options


def _run_test(args) -> int:
    from ..config.data import read_data_config

    # detector test takes its class names from the .data file, as Darknet's test_detector does
    names = read_data_config(args.data).file("names")
    return detect.run_detect(args, str(names) if names else None)


# action -> what runs it
ACTIONS = {"test": _run_test, "valid": evaluate.run, "map": evaluate.run, "recall": evaluate.run,
           "train": train.run_train, "calc_anchors": train.run_calc_anchors}


def add_parser(sub) -> None:
    p = sub.add_parser("detector", help="Darknet's 'detector' forms: test, valid, map, recall, train DATA CFG "
                                         "[WEIGHTS]; calc_anchors DATA")
    p.add_argument("action", choices=tuple(ACTIONS),
                   help="test: detect in images; valid: write Darknet's result files for the .data file's valid "
                        "list; map: COCO and VOC metrics against the labels; recall: Darknet's proposal recall; "
                        "train: train on the train list; calc_anchors: k-means anchors of the training boxes")
    p.add_argument("data")
    p.add_argument("cfg", nargs="?")
    p.add_argument("weights", nargs="?", help="(train: optional, a full file, a backbone or a checkpoint)")
    p.add_argument("images", nargs="*", metavar="INPUT",
                   help="test: images, folders, globs, image lists, videos or camera indexes as for `detect` "
                        "(none: read paths from standard input, as Darknet asks); exit status 1 when any failed")
    add_detect_options(p)
    add_stream_options(p, detector=True)
    p.add_argument("--batch", type=int, default=8, help="valid/map/recall: images per forward pass")
    p.add_argument("--workers", type=int,
                   help="valid/map/recall: photo decoding processes (default as for detect); train: loader "
                        "processes (default 4, at most the CPUs available)")
    add_size_option(p)
    p.add_argument("--results", help="valid: output folder (default: the .data file's results, else results/)")
    p.add_argument("--iou_thresh", type=float, default=None,
                   help="map: IoU a detection needs to count (default .5); recall: default .5")
    p.add_argument("--conf-thresh", type=float, default=MAP_CONF_THRESH,
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
    p.add_argument("--map", action="store_true",
                   help="train: AlexeyAB's -map: mAP@0.5 on the .data file's valid list every few epochs (at "
                        "least 100 iterations, first after 400 and the burn-in) and at the end, as `detector map` "
                        "computes it; <cfg>_best.weights at each new best; loss and mAP drawn into --chart")
    p.add_argument("--map-every", type=int, metavar="N", help="train --map: every N iterations instead")
    p.add_argument("--chart", metavar="FILE",
                   help="train --map: the loss/mAP chart (default chart.png in the current folder; needs "
                        "matplotlib)")
    p.add_argument("--gpus", help="train: Darknet's -gpus; one index only (use torchrun for several)")
    p.add_argument("--num_of_clusters", type=int, default=9, help="calc_anchors: number of anchors")
    p.add_argument("--width", type=int, default=416, help="calc_anchors: network width")
    p.add_argument("--height", type=int, default=416, help="calc_anchors: network height")


def _check_args(args) -> None:
    if args.force_header and args.action in ("train", "calc_anchors"):
        raise UsageError(f"--force-header applies to detector test, valid, map and recall, not {args.action}")
    if args.action == "calc_anchors":
        args.flags = {"width": "--width {}", "height": "--height {}"}
        if args.cfg is not None:
            raise UsageError("detector calc_anchors takes only the .data file")
        return
    if args.cfg is None or (args.weights is None and args.action != "train"):
        raise UsageError(f"detector {args.action} needs DATA CFG WEIGHTS" if args.action != "train"
                         else "detector train needs DATA CFG [WEIGHTS]")
    if args.action != "train" and (args.map or args.map_every is not None or args.chart is not None):
        raise UsageError(f"--map, --map-every and --chart are detector train's options, not {args.action}'s")
    if args.action == "train" and not args.map and (args.map_every is not None or args.chart is not None):
        raise UsageError("--map-every and --chart go with --map")
    if args.action == "train" and args.images:
        raise UsageError(f"detector train takes DATA CFG [WEIGHTS]; got extra arguments {' '.join(args.images)}")


def run(args) -> int:
    _check_args(args)
    return ACTIONS[args.action](args)


__all__ = ["ACTIONS", "add_parser", "run"]
