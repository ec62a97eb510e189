#!/usr/bin/env python3
"""Converted models against darknet-py's own PyTorch path, on the CPU, measured in one run.

For every export format whose runtime is installed (darknet_py.export.backends.BACKENDS): the
model is converted (float32 unless ``--precision``), the written file is loaded in its runtime,
and the raw heads of a letterboxed photo are timed at batch 1 (latency) and batch 8
(throughput, photos per second; int8 matched at IoU >= .9), interleaved round by round with darknet-py's PyTorch forward
(the baseline) and its FastDetector forward, so machine noise hits all alike. Each row also
gives the detections matched against PyTorch on the photos (darknet_py.export.verify), so a
fast number is never a wrong one. Ratios: the format's time over PyTorch's (< 1.0 is faster).

Formats whose file has a fixed batch of 1 (TFLite) run batch 8 as 8 calls; ONNX and
TorchScript are exported with --dynamic so one file runs both batches.

    python tools/bench_export.py [--threads 2] [--repeat 5] [--formats onnx,tflite] [--precision fp32]
                                 [--precision int8 --calibrate DATA]
                                 [--cfg cfg/yolov3-tiny.cfg --weights W] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REF = ROOT.parent / "shared" / "darknet-reference"


def photos_from(ref: Path):
    from darknet_py.export.check import synthetic_image
    from darknet_py.imageio import load_image
    found = sorted((ref / "pjreddie" / "data").glob("*.jpg"))
    if found:
        return [(p.name, load_image(p)[0]) for p in found]
    return [("synthetic", synthetic_image())]


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cfg", default=str(ROOT / "cfg" / "yolov3-tiny.cfg"))
    ap.add_argument("--weights", default=None, help="default: the official yolov3-tiny weights if present, "
                                                    "else calibrated random weights")
    ap.add_argument("--formats", default=None, help="comma-separated (default: every installed format)")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--calibrate", default=None, help="int8: the .data file whose photos calibrate it")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    import darknet_py
    from darknet_py.export.backends import BACKENDS, ExportOptions
    from darknet_py.export.verify import verify_runner
    from darknet_py.fast import FastDetector
    from darknet_py.transforms import prepare_batch

    torch.set_num_threads(args.threads)
    weights = args.weights
    pretrained = REF / "pretrained" / "yolov3-tiny.weights"
    if weights is None and Path(args.cfg).name == "yolov3-tiny.cfg" and pretrained.exists():
        weights = str(pretrained)
    model = darknet_py.load(args.cfg, weights, channels_last=False)
    photos = photos_from(REF)
    if weights is None:
        from darknet_py.random_weights import randomize
        x0, _ = prepare_batch([torch.from_numpy(photos[0][1])], *model.input_size)
        model = randomize(model, x0, seed=3)
    net_w, net_h = model.input_size
    x1, _ = prepare_batch([torch.from_numpy(photos[0][1])], net_w, net_h)
    x8 = x1.repeat(8, 1, 1, 1)
    fast = FastDetector(model)

    rows = []

    def pytorch(x):
        with torch.inference_mode():
            return model(x)

    def fast_forward(x):
        with torch.inference_mode():
            return fast.forward(x)

    runners = {"PyTorch forward (baseline)": (pytorch, None), "FastDetector forward": (fast_forward, None)}
    wanted = args.formats.split(",") if args.formats else [n for n in BACKENDS if n != "pt"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    for name in wanted:
        be = BACKENDS[name]
        if args.precision not in be.precisions:
            print(f"{name}: offers {', '.join(be.precisions)}, not {args.precision}; skipped", file=sys.stderr)
            continue
        opts = ExportOptions(precision=args.precision, sample=photos[0][1])
        if args.precision == "int8":
            if not args.calibrate:
                print(f"{name}: int8 needs --calibrate DATA; skipped", file=sys.stderr)
                continue
            opts.calibration = args.calibrate
        elif "dynamic" in be.offers:
            opts.dynamic = True
        path = tmp / f"model{be.suffix}"
        try:
            be.write_file(model, path, opts)
            loaded = be.open_file(path, model, opts)
        except Exception as e:  # a runtime not installed, or a format refused: say so, go on
            print(f"{name}: not measured ({type(e).__name__}: {str(e).splitlines()[0][:160]})", file=sys.stderr)
            continue
        run = loaded.runner
        from darknet_py.export.verify import INT8_MATCH_IOU, MATCH_IOU
        check = verify_runner(model, run, photos, iou=INT8_MATCH_IOU if args.precision == "int8" else MATCH_IOU)
        batched = opts.dynamic

        def run8(x, run=run, batched=batched):
            if batched:
                return run(x)
            return [run(x[i:i + 1]) for i in range(len(x))]
        runners[f"{name} ({args.precision}, {loaded.runtime})"] = ((lambda x, run=run: run(x.numpy())), run8, check)

    # warm-up, then interleaved rounds
    results = {k: {"b1": [], "b8": []} for k in runners}
    for entry in runners.values():
        entry[0](x1)
    for _ in range(args.repeat):
        for k, entry in runners.items():
            f1, f8 = entry[0], entry[1]
            # a pause between implementations: a runtime's thread pool spins for a while after its
            # call (onnxruntime's does) and, in one process, would slow whatever runs next (measured:
            # TorchScript right after onnxruntime 83 ms at batch 1, 44 ms alone)
            time.sleep(0.1)
            results[k]["b1"].append(timed(lambda f1=f1: f1(x1), 1))
            time.sleep(0.1)
            if f8 is None:
                results[k]["b8"].append(timed(lambda f1=f1: f1(x8), 1))
            else:
                results[k]["b8"].append(timed(lambda f8=f8: f8(x8.numpy()), 1))
    base1 = statistics.median(results["PyTorch forward (baseline)"]["b1"])
    base8 = statistics.median(results["PyTorch forward (baseline)"]["b8"])
    print(f"{Path(args.cfg).name} at {net_w}x{net_h}, {args.threads} threads, median of {args.repeat}; "
          f"weights: {'official' if weights else 'calibrated random'}; matched: PyTorch's detections on "
          f"{len(photos)} photos (same class, IoU >= {0.9 if args.precision == 'int8' else 0.99:g})")
    print(f"{'implementation':<62} {'batch 1 ms':>10} {'ratio':>6} {'batch 8 img/s':>13} {'ratio':>6} {'matched':>9}")
    for k, entry in runners.items():
        t1 = statistics.median(results[k]["b1"])
        t8 = statistics.median(results[k]["b8"])
        matched = "-"
        if len(entry) > 2:
            tot = entry[2].total
            matched = f"{tot.matched}/{tot.reference_count}"
        print(f"{k[:62]:<62} {1e3 * t1:>10.1f} {t1 / base1:>6.2f} {8 / t8:>13.1f} {t8 / base8:>6.2f} {matched:>9}")
        rows.append({"implementation": k, "batch1_ms": 1e3 * t1, "batch1_ratio": t1 / base1,
                     "batch8_images_per_s": 8 / t8, "batch8_time_ratio": t8 / base8, "matched": matched})
    if args.json:
        from darknet_py.files import write_text
        write_text(args.json, json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
