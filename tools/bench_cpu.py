#!/usr/bin/env python3
"""CPU benchmark: darknet-py against OpenCV's DNN module on the same cfg, weights and input.

Both run yolov3 (and yolov3-tiny) at 416x416, batch 1, with the same thread count, on one
letterboxed photo and calibrated random weights written by our writer. Timed in one process,
interleaved round by round (so machine noise hits every implementation alike):

* OpenCV DNN forward (the baseline), on the letterboxed blob;
* darknet-py forward: ``model(x)`` (the exact path) and ``FastDetector.forward`` (darknet_py.fast);
* darknet-py forward + decode + NMS from the letterboxed tensor (exact and fast);
* darknet-py full pipeline, uint8 photo -> final boxes (letterbox included): ``detect_batch``
  (exact) and ``FastDetector.detect_batch``.

Peak RSS per configuration: each implementation runs again alone in a fresh subprocess (load,
warm-up, two calls) that reports its own ``ru_maxrss``. Prints a table of median times, the
ratio to OpenCV (< 1.0 means darknet-py is faster) and peak RSS; ``--json`` writes it too.

    python tools/bench_cpu.py [--threads 2] [--repeat 5] [--models yolov3,yolov3-tiny] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from darknet_py.files import write_text  # noqa: E402

REF = ROOT.parent / "shared" / "darknet-reference"

# configuration -> what its row is called
CONFIGS = {
    "opencv": "OpenCV DNN forward (baseline)",
    "exact_net": "darknet-py forward (exact path)",
    "fast_net": "darknet-py FastDetector forward",
    "exact_post": "darknet-py forward + decode + NMS (exact)",
    "fast_post": "darknet-py FastDetector forward + decode + NMS",
    "exact_full": "darknet-py photo -> boxes (exact)",
    "fast_full": "darknet-py FastDetector photo -> boxes",
}
# what the RSS subprocess of a configuration runs (the forward rows share theirs with the full rows)
RSS_OF = {"opencv": "opencv", "exact_net": "exact_full", "exact_post": "exact_full", "exact_full": "exact_full",
          "fast_net": "fast_full", "fast_post": "fast_full", "fast_full": "fast_full"}


def _photo() -> np.ndarray:
    from darknet_py.imageio import load_image
    p = REF / "pjreddie" / "data" / "dog.jpg"
    if p.exists():
        return load_image(p)[0]
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


def make_files(name: str, size: int, workdir: Path):
    """The sized cfg and calibrated random weights written by our writer."""
    import darknet_py
    from darknet_py.random_weights import randomize
    from darknet_py.transforms import letterbox
    text = (ROOT / "cfg" / f"{name}.cfg").read_text()
    text = re.sub(r"(?m)^width=\d+", f"width={size}", text)
    text = re.sub(r"(?m)^height=\d+", f"height={size}", text)
    cfg = workdir / f"{name}.cfg"
    cfg.write_text(text)
    weights = workdir / f"{name}.weights"
    x, _ = letterbox(_photo(), size, size)
    randomize(darknet_py.build_model(cfg), x[None]).save_weights(weights)
    return cfg, weights


_MODELS: dict = {}


def build(config: str, cfg: Path, weights: Path, size: int, threads: int):
    """A zero-argument function running ``config`` once (models loaded here, outside the timing)."""
    import cv2
    import torch

    import darknet_py
    from darknet_py.detector import postprocess
    from darknet_py.transforms import letterbox
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    photo = _photo()
    x, info = letterbox(photo, size, size)
    x = x[None]
    if config == "opencv":
        net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        names = net.getUnconnectedOutLayersNames()
        blob = x.numpy()

        def opencv():
            net.setInput(blob)
            return net.forward(names)
        return opencv
    key = (str(cfg), str(weights))
    if key not in _MODELS:  # one exact model and one FastDetector per cfg in the timing process
        _MODELS.clear()
        _MODELS[key] = {"model": darknet_py.load(cfg, weights)}
    model = _MODELS[key]["model"]
    if config.startswith("exact"):
        def exact_net():
            with torch.inference_mode():
                return model(x)

        def exact_post():
            with torch.inference_mode():
                return postprocess(model, model(x), [info], 0.5, 0.45)
        return {"exact_net": exact_net, "exact_post": exact_post,
                "exact_full": lambda: darknet_py.detect_batch(model, [photo], 0.5, 0.45)}[config]
    from darknet_py.fast import FastDetector
    if "fast" not in _MODELS[key]:
        _MODELS[key]["fast"] = FastDetector(model)
    fd = _MODELS[key]["fast"]
    return {"fast_net": lambda: fd.forward(x), "fast_post": lambda: fd.detect_tensor(x, [info], 0.5, 0.45),
            "fast_full": lambda: fd.detect_batch([photo], 0.5, 0.45)}[config]


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM belongs to the address space made by exec; ru_maxrss would
    also count the parent's RSS at fork time (Linux keeps the larger across execve)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> int:
    """Subprocess: one configuration alone; prints its peak RSS (MB) as JSON."""
    fn = build(args.worker, Path(args.cfg), Path(args.weights), args.size, args.threads)
    fn()
    t = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t
    print(json.dumps({"rss_mb": _peak_rss_mb(), "seconds": seconds}))
    return 0


def peak_rss(config: str, cfg: Path, weights: Path, args):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", config, "--cfg", str(cfg), "--weights",
           str(weights), "--size", str(args.size), "--threads", str(args.threads)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if out.returncode:
            return None, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
        return json.loads(out.stdout.strip().splitlines()[-1])["rss_mb"], None
    except Exception as e:  # noqa: BLE001 - a failing subprocess is reported, not fatal
        return None, f"{type(e).__name__}: {e}"


def bench(name: str, args, workdir: Path) -> list:
    cfg, weights = make_files(name, args.size, workdir)
    configs = [c for c in CONFIGS if c in args.configs.split(",")]
    fns = [build(c, cfg, weights, args.size, args.threads) for c in configs]
    times = _median_times(fns, args.repeat)
    del fns
    base = times[configs.index("opencv")] if "opencv" in configs else None
    rss = {}
    if not args.no_rss:
        for c in sorted({RSS_OF[c] for c in configs}):
            rss[c] = peak_rss(c, cfg, weights, args)
    rows = []
    for c, t in zip(configs, times):
        mb, err = rss.get(RSS_OF[c], (None, None))
        rows.append(dict(model=name, config=c, what=CONFIGS[c], seconds=t, ratio=t / base if base else None,
                         rss_mb=mb, rss_of=RSS_OF[c], rss_error=err))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--models", default="yolov3,yolov3-tiny")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="a comma-separated subset of " + ",".join(CONFIGS))
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    ap.add_argument("--json", help="also write the table here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--cfg", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    import cv2
    import torch
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            results += bench(name, args, Path(tmp))
    print(f"torch {torch.__version__}, OpenCV {cv2.__version__}, {args.threads} threads, {args.size}x{args.size}, "
          f"batch 1, median of {args.repeat} (interleaved); peak RSS: each implementation alone in a subprocess")
    print(f"{'model':<12} {'what':<48} {'ms':>9} {'x OpenCV':>9} {'peak RSS MB':>12}")
    for r in results:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        mb = f"{r['rss_mb']:.0f}" if r["rss_mb"] is not None else (r["rss_error"] or "-")[:40]
        print(f"{r['model']:<12} {r['what']:<48} {r['seconds'] * 1e3:9.1f} {ratio:>9} {mb:>12}")
    print("(the forward rows' RSS is their implementation's photo -> boxes run: load, warm-up, two calls)")
    if args.json:
        write_text(args.json, json.dumps({"threads": args.threads, "size": args.size, "repeat": args.repeat,
                                               "torch": torch.__version__, "opencv": cv2.__version__,
                                               "rows": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
