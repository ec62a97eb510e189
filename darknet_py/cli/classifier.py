"""``darknet-py classifier predict DATA CFG WEIGHTS [IMG ...]``: Darknet's top-k classes."""
from __future__ import annotations

import sys
import time

from ..errors import escape_controls
from .args import add_force_header_option


def add_parser(sub) -> None:
    p = sub.add_parser("classifier", help="Darknet's 'classifier predict DATA CFG WEIGHTS [IMG...]': top-k classes")
    p.add_argument("action", choices=("predict",))
    p.add_argument("data", help=".data file: names= (or labels=) and top=")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("images", nargs="*", help="photos (none: read paths from standard input)")
    p.add_argument("-t", "--top", type=int, default=None,
                   help="how many classes, >= 1 (default: the .data file's top, else 1)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: cpu)")
    add_force_header_option(p)


def run(args) -> int:
    from ..checks import check_count
    from ..classifier import classify
    from ..config.data import read_data_config
    from ..config.names import read_names
    from ..detector import load
    from ..errors import DarknetPyError

    check_count("top", args.top, 1)  # before the model loads
    data = read_data_config(args.data)
    model = load(args.cfg, args.weights, device=args.device or "cpu", force_header=args.force_header)
    c, h, w = model.netdef.shapes[-1]
    outputs = c * h * w
    # predict_classifier: names=, else labels= (Darknet's default data/labels.list)
    names_path = data.file("names") or data.file("labels")
    names = read_names(names_path, outputs) if names_path else [str(i) for i in range(outputs)]
    top = args.top if args.top is not None else int(data.get("top", "1"))
    images = list(args.images) or [line.strip() for line in sys.stdin if line.strip()]
    failed = 0
    for image in images:
        start = time.perf_counter()
        try:
            pred = classify(model, image, top)
        except DarknetPyError as exc:  # one bad photo is reported; the others still run
            print(f"darknet-py: {escape_controls(str(exc))}", file=sys.stderr)
            failed += 1
            continue
        # on standard output with the classes, as Darknet's predict_classifier and `detect` print it
        print(f"{escape_controls(image)}: Predicted in {time.perf_counter() - start:f} seconds.")
        for i, score in zip(pred.indices, pred.scores):
            print(f"{score * 100:5.2f}%: {escape_controls(names[i])}")
    return 1 if failed else 0


__all__ = ["add_parser", "run"]
