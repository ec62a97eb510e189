#!/usr/bin/env python3
"""CPU benchmark: darknet-py against OpenCV's DNN module on the same cfg, weights and input.

Both run yolov3 (and yolov3-tiny) at 416x416, batch 1, with the same thread count, on one
letterboxed photo and calibrated random weights written by our writer. Prints a table of
median times and the ratio ours/OpenCV (< 1.0 means darknet-py is faster), plus peak RSS.

    python tools/bench_cpu.py [--threads 2] [--repeat 5] [--models yolov3,yolov3-tiny] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import darknet_py  # noqa: E402
from darknet_py.detector import postprocess  # noqa: E402
from darknet_py.random_weights import randomize  # noqa: E402
from darknet_py.transforms import letterbox  # noqa: E402

REF = ROOT.parent / "shared" / "darknet-reference"


def _photo() -> np.ndarray:
    p = REF / "pjreddie" / "data" / "dog.jpg"
    if p.exists():
        return darknet_py.imageio.load_image(p)[0]
    return (np.random.default_rng(0).random((576, 768, 3)) * 255).astype(np.uint8)


def _median_times(fns, repeat: int) -> list:
    """Median time of each function, interleaved round by round so that machine noise and
    thread pools left spinning by one implementation hit all of them alike."""
    for fn in fns:
        fn()  # warm-up (allocations, oneDNN primitive creation)
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def bench(name: str, size: int, threads: int, repeat: int, workdir: Path) -> list:
    cfg_src = ROOT / "cfg" / f"{name}.cfg"
    text = cfg_src.read_text()
    text = re.sub(r"(?m)^width=\d+", f"width={size}", text)
    text = re.sub(r"(?m)^height=\d+", f"height={size}", text)
    cfg = workdir / f"{name}.cfg"
    cfg.write_text(text)
    x, info = letterbox(_photo(), size, size)
    x = x[None]
    weights = workdir / f"{name}.weights"
    randomize(darknet_py.build_model(cfg), x).save_weights(weights)

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    model = darknet_py.load(cfg, weights)

    def ours_net():
        with torch.inference_mode():
            return model(x)

    def ours_full():
        with torch.inference_mode():
            return postprocess(model, model(x), [info], 0.5, 0.45)

    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    names = net.getUnconnectedOutLayersNames()
    blob = x.numpy()

    def opencv_net():
        net.setInput(blob)
        return net.forward(names)

    base, net_t, full_t = _median_times([opencv_net, ours_net, ours_full], repeat)
    rows = [(name, "OpenCV DNN forward (baseline)", base), (name, "darknet-py forward", net_t),
            (name, "darknet-py forward + decode + NMS", full_t)]
    return [(n, what, t, t / base) for n, what, t in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--models", default="yolov3,yolov3-tiny")
    ap.add_argument("--json", help="also write the table here")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            results += bench(name, args.size, args.threads, args.repeat, Path(tmp))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {torch.__version__}, OpenCV {cv2.__version__}, {args.threads} threads, {args.size}x{args.size}, "
          f"batch 1, median of {args.repeat}")
    print(f"{'model':<12} {'what':<36} {'ms':>9} {'x OpenCV':>9}")
    for name, what, t, ratio in results:
        print(f"{name:<12} {what:<36} {t * 1e3:9.1f} {ratio:9.2f}")
    print(f"peak RSS of this process (both implementations loaded): {rss_mb:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "size": args.size, "rss_mb": rss_mb,
                                               "rows": [dict(model=n, what=w, seconds=t, ratio=r)
                                                        for n, w, t, r in results]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
