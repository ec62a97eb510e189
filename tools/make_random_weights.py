#!/usr/bin/env python3
"""Write calibrated random weights for a cfg (for trying the CLI, tests and benchmarks).

    python tools/make_random_weights.py CFG OUT.weights [--image PHOTO] [--seed 0]

The BN statistics are measured on PHOTO (or a smooth random image), so activations stay alive
through the whole net and a few dozen boxes pass 0.25; the boxes mean nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import darknet_py  # noqa: E402
from darknet_py.imageio import load_image  # noqa: E402
from darknet_py.random_weights import randomize  # noqa: E402
from darknet_py.transforms import letterbox  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cfg")
    ap.add_argument("out")
    ap.add_argument("--image", help="calibration photo")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        model = darknet_py.build_model(args.cfg)
        x = None
        if args.image:
            w, h = model.input_size
            x = letterbox(load_image(args.image)[0], w, h)[0][None]
        randomize(model, x, seed=args.seed).save_weights(args.out)
    except darknet_py.DarknetPyError as exc:
        print(f"make_random_weights: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
