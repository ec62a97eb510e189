"""``darknet-py synth DIR``: a synthetic shapes dataset in Darknet's layout."""
from __future__ import annotations

import time

from .args import add_overwrite_option


def add_parser(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic shapes dataset in Darknet's layout (images, labels, "
                                      ".data, .names, lists, COCO json)")
    p.add_argument("out", help="dataset folder")
    p.add_argument("--train", type=int, default=200, help="training images")
    p.add_argument("--valid", type=int, default=50, help="validation images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-side", type=int, default=160, help="smallest image side")
    p.add_argument("--max-side", type=int, default=512, help="largest image side")
    p.add_argument("--max-objects", type=int, default=6, help="objects per image, at most")
    add_overwrite_option(p, "the dataset's files (an earlier run's, or a list or .data file of the same name)")


def run(args) -> int:
    from ..synth import make_dataset

    start = time.perf_counter()
    ds = make_dataset(args.out, train=args.train, valid=args.valid, seed=args.seed, min_side=args.min_side,
                      max_side=args.max_side, max_objects=args.max_objects, overwrite=args.overwrite)
    print(f"wrote {ds.train_images} training and {ds.valid_images} validation images of {len(ds.classes)} classes "
          f"to {ds.root} in {time.perf_counter() - start:.1f} s; data file: {ds.data}")
    return 0


__all__ = ["add_parser", "run"]
