#!/usr/bin/env python3
"""Write calibrated random weights for a cfg (for trying the CLI, tests and benchmarks).

    python tools/make_random_weights.py CFG OUT.weights [--image PHOTO ...] [--seed 0]

The BN statistics are measured on the PHOTOs (or a few synthetic scenes), so activations stay
alive through the whole net, and the heads are set so that a few dozen boxes pass 0.25 on
ordinary photos, not only on the calibration's (randomize's scale_free_heads); the boxes mean
nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import darknet_py  # noqa: E402
from darknet_py.imageio import load_image  # noqa: E402
from darknet_py.random_weights import randomize, synthetic_calibration  # noqa: E402
from darknet_py.transforms import letterbox  # noqa: E402

# How many predictions' objectness should pass 0.25 on the calibration input, all heads together
# (measured on the seven sample photos: yolov3 12-59 boxes, yolov3-tiny 9-31):
# after the class threshold and the NMS, a few dozen boxes on a photo.
OBJECTNESS_PASSES = 20


def objectness_rate(model) -> float:
    """OBJECTNESS_PASSES as a fraction of the network's predictions (its heads' cells x anchors)."""
    netdef = model.netdef
    total = 0
    for idx, spec in zip(netdef.head_indices, model.head_specs):
        c, h, w = netdef.shapes[idx]
        total += c * h * w // (5 + spec.classes)
    return min(0.05, OBJECTNESS_PASSES / max(total, 1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cfg")
    ap.add_argument("out")
    ap.add_argument("--image", action="append", help="calibration photo (may be repeated; default: synthetic scenes)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        model = darknet_py.build_model(args.cfg)
        w, h = model.input_size
        if args.image:
            x = torch.stack([letterbox(load_image(p)[0], w, h)[0] for p in args.image])
        else:
            x = synthetic_calibration(w, h, seed=args.seed)
        randomize(model, x, seed=args.seed, objectness_rate=objectness_rate(model), scale_free_heads=True)
        model.save_weights(args.out)
    except darknet_py.DarknetPyError as exc:
        print(f"make_random_weights: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
