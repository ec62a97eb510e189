#!/usr/bin/env python3
"""Streaming ``darknet-py detect`` over a folder of JPEG photos to JSON lines, end to end, in one run.

Writes COUNT JPEG photos (default 2,000 at 640x480: random crops of the reference photos when
``../shared/darknet-reference`` is there, synthetic scenes otherwise) and calibrated random
weights for the cfg, then times, on one device:

1. the baseline: a plain Python loop, ``darknet_py.detect(model, path)`` photo after photo (the
   exact fp32 model, as a script using the API would), on every photo (or the first BASELINE);
2. the host pipeline alone: the streaming engine with a runner that only uploads the photos
   (decoding workers, transfer, JSON lines) - the ceiling that no network speed can lift - with
   the photos handed over through the shared ring (``stream.PhotoRing``), then without it;
3. the command itself, in this process, ``darknet-py detect CFG WEIGHTS FOLDER --json-out F``
   with the exact path and, on CUDA, ``--half --cuda-graph`` at larger batches: "stream" is the
   command's own images/s (model loading excluded), "wall" the whole command.

Checks: every photo has one JSON line, in input order, and the exact configuration's detections
equal the baseline's (classes, scores to 1e-5, boxes to 0.01 px as written) on the photos both ran.
Prints a table with ratios to the baseline and writes it as JSON with ``--json PATH``.

    python tools/bench_stream.py --json bench_stream.json              # 2,000 photos, yolov3-416
    python tools/bench_stream.py --cfg cfg/yolov3-tiny.cfg --count 400   # a CPU-sized run
    python tools/bench_stream.py --quick                               # a smoke run (seconds)
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from darknet_py.files import write_text  # noqa: E402
import darknet_py  # noqa: E402
from darknet_py import cli, stream  # noqa: E402
from darknet_py.postprocess import Detections  # noqa: E402
from darknet_py.random_weights import randomize  # noqa: E402
from darknet_py.transforms import letterbox  # noqa: E402

REF = ROOT.parent / "shared" / "darknet-reference" / "pjreddie" / "data"
PHOTOS = ("dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg", "scream.jpg")
SUMMARY = re.compile(r"(\d+) ok, (\d+) failed \((\d+) images in ([\d.]+) s, ([\d.]+) images/s\)")


# ------------------------------------------------------------------------------------ inputs


def make_photos(folder: Path, count: int, width: int, height: int, seed: int = 0) -> list:
    """COUNT distinct JPEGs (quality 90): random crops, scales and flips of the reference photos,
    or synthetic scenes where those are absent. Returns the paths in the order the command lists them."""
    rng = np.random.default_rng(seed)
    sources = [cv2.imread(str(REF / name)) for name in PHOTOS if (REF / name).exists()]
    sources = [s for s in sources if s is not None]
    if not sources:
        from darknet_py.synth import render_image
        sources = [cv2.cvtColor(render_image(rng, 2 * width, 2 * height, 8)[0], cv2.COLOR_RGB2BGR) for _ in range(4)]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        src = sources[k % len(sources)]
        scale = rng.uniform(1.0, 1.6) * max(width / src.shape[1], height / src.shape[0])
        big = cv2.resize(src, (max(width, round(src.shape[1] * scale)), max(height, round(src.shape[0] * scale))),
                         interpolation=cv2.INTER_LINEAR)
        y = int(rng.integers(0, big.shape[0] - height + 1))
        x = int(rng.integers(0, big.shape[1] - width + 1))
        crop = big[y:y + height, x:x + width]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        path = folder / f"photo_{k:05d}.jpg"
        if not cv2.imwrite(str(path), np.ascontiguousarray(crop), [cv2.IMWRITE_JPEG_QUALITY, 90]):
            raise RuntimeError(f"cannot write {path}")
        paths.append(str(path))
    return paths


def make_weights(cfg: Path, out: Path, size: int, tmp: Path, photos: list, objectness_rate: float,
                 class_shift: float) -> Path:
    """The cfg at SIZE (written beside the weights) with calibrated random weights: BN statistics
    and the heads' objectness measured on PHOTOS; class logits lowered by CLASS_SHIFT so that a box
    passes with one or two classes, as a trained model's do, rather than a handful."""
    text = cfg.read_text()
    text = re.sub(r"(?m)^width\s*=\s*\d+", f"width={size}", text, count=1)
    text = re.sub(r"(?m)^height\s*=\s*\d+", f"height={size}", text, count=1)
    sized = tmp / cfg.name
    sized.write_text(text)
    x = torch.stack([letterbox(cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB), size, size)[0] for p in photos])
    model = randomize(darknet_py.build_model(sized), x, seed=1, objectness_rate=objectness_rate)
    with torch.no_grad():
        for idx, spec in zip(model.netdef.head_indices, model.head_specs):
            conv = model.layers[model.inputs[idx][0]].conv  # the head's input: a linear conv with a bias
            k = torch.arange(conv.out_channels) % (5 + spec.classes)
            conv.bias[k >= 5] += class_shift
    model.save_weights(out)
    return sized


# ------------------------------------------------------------------------------------ runs


class UploadOnly:
    """A streaming runner without a network: it uploads each batch to the device (as the model's
    runner does) and finds nothing. What remains is decoding, transfer and output."""

    accepts_tensors = True
    host_prepare = None

    def __init__(self, device: torch.device):
        self.device = device

    def detect_batch(self, images, thresh, nms):
        on_device = [torch.as_tensor(im).to(self.device, non_blocking=True) for im in images]
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        empty = Detections(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64), torch.zeros(0),
                           torch.zeros(0, dtype=torch.int64))
        del on_device
        return [empty] * len(images)


def read_json_lines(path: Path) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_command(argv: list) -> dict:
    """``darknet-py ARGV`` in this process: its exit status, wall time and summary line."""
    err = io.StringIO()
    cpu = time.process_time()
    t = time.perf_counter()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(err):
        rc = cli.main(argv)  # Darknet's lines go to stdout as well: to /dev/null, as a log file would take them
    wall = time.perf_counter() - t
    cpu = time.process_time() - cpu
    m = SUMMARY.search(err.getvalue())
    if rc != 0 or m is None:
        raise RuntimeError(f"exit {rc}: {err.getvalue().strip()[-400:]}")
    return dict(wall=wall, cpu=cpu, ok=int(m.group(1)), failed=int(m.group(2)), stream_s=float(m.group(4)),
                stream_img_s=float(m.group(5)))


def compare(baseline: dict, lines: list) -> str:
    """The exact streaming output against the baseline loop's detections, photo by photo."""
    worst_box = worst_score = 0.0
    for rec in lines:
        dets = baseline.get(rec["image"])
        if dets is None:
            continue
        got = rec["detections"]
        if [d["class_id"] for d in got] != dets.classes.tolist():
            raise AssertionError(f"{rec['image']}: classes {[d['class_id'] for d in got]} != "
                                 f"{dets.classes.tolist()} (baseline)")
        if got:
            worst_score = max(worst_score, float(np.abs(np.array([d["score"] for d in got])
                                                        - dets.scores.numpy()).max()))
            worst_box = max(worst_box, float(np.abs(np.array([d["box"] for d in got])
                                                    - np.round(dets.boxes.numpy().astype(np.float64), 2)).max()))
    if worst_score > 1e-5 or worst_box > 0.0100001:
        raise AssertionError(f"largest differences: score {worst_score:.2e}, box {worst_box:.3f} px")
    return f"{len(baseline)} photos: same classes, scores within {worst_score:.1e}, boxes within {worst_box:.2f} px"


class Bench:
    def __init__(self, args):
        self.args = args
        self.cuda = torch.cuda.is_available() and not args.cpu
        self.dev = torch.device("cuda" if self.cuda else "cpu")
        self.rows, self.checks = [], []
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def attempt(self, what: str, batch, workers, fn) -> dict:
        """One timed run of a configuration; never raises (the error is the result)."""
        try:
            res = fn()
        except Exception as e:  # noqa: BLE001 - one failing configuration must not end the run
            res = dict(error=f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
            if self.args.verbose:
                traceback.print_exc()
        status = res.get("error") or f"{res['images']} images  {res['img_s']:.1f} img/s"
        print(f"  [{self.elapsed():6.1f}s] {what:<46} b{batch!s:<4} w{workers!s:<3} {status}", flush=True)
        return res

    def record(self, what: str, batch, workers, runs: list) -> dict:
        """A table row from the rounds' runs of one configuration: the median run (by img/s)."""
        rec = dict(what=what, batch=batch, workers=workers, images=None, seconds=None, img_s=None, wall_img_s=None,
                   x_baseline=None, dets=None, main_cpu_ms=None, error=None, rounds_img_s=None)
        errors = [r["error"] for r in runs if r.get("error")]
        if errors:
            rec["error"] = errors[0]
        else:
            ordered = sorted(runs, key=lambda r: r["img_s"])
            rec.update(ordered[(len(ordered) - 1) // 2])
            rec["rounds_img_s"] = [r["img_s"] for r in runs]
            base = self.rows[0]["img_s"] if self.rows and self.rows[0]["img_s"] else None
            if base:
                rec["x_baseline"] = rec["img_s"] / base
        self.rows.append(rec)
        return rec

    def check(self, name: str, fn) -> None:
        try:
            ok, detail = True, fn()
        except Exception as e:  # noqa: BLE001
            ok, detail = False, f"{type(e).__name__}: {str(e)[:300]}"
        self.checks.append(dict(check=name, ok=ok, detail=str(detail)))
        print(f"  check {'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)

    def run(self) -> None:
        a = self.args
        tmp = Path(tempfile.mkdtemp(prefix="bench_stream_"))
        folder = tmp / "photos"
        t = time.perf_counter()
        paths = make_photos(folder, a.count, a.width, a.height)
        print(f"{len(paths)} photos {a.width}x{a.height} written in {time.perf_counter() - t:.1f} s "
              f"({sum(os.path.getsize(p) for p in paths) / len(paths) / 1024:.0f} KiB each)", flush=True)
        weights = tmp / "random.weights"
        cfg = make_weights(Path(a.cfg), weights, a.size, tmp, paths[:8], a.objectness_rate, a.class_shift)
        dev = "cuda" if self.cuda else "cpu"
        workers = a.workers if a.workers is not None else stream.default_workers(self.cuda, 1)
        exact_batch = a.batch or (8 if self.cuda else 1)
        fast_batch = a.fast_batch or 64

        # 1. the baseline loop (its detections are the reference of the check below)
        model = darknet_py.load(cfg, weights, device=self.dev)
        n_base = len(paths) if a.baseline is None else min(a.baseline, len(paths))
        baseline: dict = {}

        def loop():
            darknet_py.detect(model, paths[0], a.thresh, a.nms)  # warm-up
            if self.cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            for p in paths[:n_base]:
                baseline[p] = darknet_py.detect(model, p, a.thresh, a.nms).to("cpu")
            s = time.perf_counter() - t
            return dict(images=n_base, seconds=s, img_s=n_base / s, wall_img_s=n_base / s, main_cpu_ms=None,
                        dets=float(np.mean([len(d) for d in baseline.values()])))

        jobs = [("baseline: detect() per photo, exact fp32", 1, 0, loop, None)]

        # 2. the host pipeline without a network: photos through the shared ring (as the command
        # hands them to a GPU runner), then one shared-memory file per photo (torch's default)
        def host_only(ring_bytes: int):
            items = stream.expand_inputs([str(folder)])
            out = tmp / "upload_only.jsonl"
            opts = stream.StreamOptions(thresh=a.thresh, nms=a.nms, batch=fast_batch, workers=workers,
                                        pin_memory=self.cuda, ring_bytes=ring_bytes)
            cpu = time.process_time()
            summary = stream.run(UploadOnly(self.dev), items, opts, stream.Outputs(text=False, json_out=str(out)),
                                 ["x"], 1, out=io.StringIO(), err=io.StringIO(), progress=False)
            cpu = time.process_time() - cpu
            assert summary.ok == len(paths) and summary.failed == 0, summary
            return dict(images=summary.ok, seconds=summary.seconds, img_s=summary.images_per_second,
                        wall_img_s=summary.images_per_second, main_cpu_ms=1e3 * cpu / summary.ok)

        jobs.append(("host pipeline only: decode, upload, JSON", fast_batch, workers,
                     lambda: host_only(stream.RING_BYTES), None))
        if workers:
            jobs.append(("  the same, one shared-memory file per photo", fast_batch, workers, lambda: host_only(0),
                         None))

        # 3. the command
        configs = [("darknet-py detect (exact fp32)", exact_batch, [])]
        if self.cuda:
            configs += [("darknet-py detect --half --cuda-graph", fast_batch, ["--half", "--cuda-graph"])]
            if a.fast_batch is None:
                configs += [("darknet-py detect --half --cuda-graph", 128, ["--half", "--cuda-graph"])]
        elif not a.quick:
            configs += [("darknet-py detect --fast", exact_batch, ["--fast"])]
        for k, (what, batch, flags) in enumerate(configs):
            out = tmp / f"run{k}.jsonl"

            def command(out=out, batch=batch, flags=flags):
                res = run_command(["detect", str(cfg), str(weights), str(folder), "--json-out", str(out),
                                   "--device", dev, "--batch", str(batch), "--workers", str(workers),
                                   "--thresh", str(a.thresh), "--nms", str(a.nms), "--no-progress", *flags])
                dets = [len(rec["detections"]) for rec in read_json_lines(out)]
                return dict(images=res["ok"], seconds=res["stream_s"], img_s=res["stream_img_s"],
                            wall_img_s=res["ok"] / res["wall"], dets=float(np.mean(dets)) if dets else 0.0,
                            main_cpu_ms=1e3 * res["cpu"] / max(1, res["ok"]))

            def checks(what=what, batch=batch, out=out, first=k == 0):
                lines = read_json_lines(out)
                self.check(f"{what}, batch {batch}: one JSON line per photo, in order",
                           lambda: self._order(lines, paths))
                if first:
                    self.check(f"{what}: detections equal the baseline loop's", lambda: compare(baseline, lines))

            jobs.append((what, batch, workers, command, checks))

        # the configurations take turns, round after round: a slow spell of a shared machine then
        # touches every row alike, and each row reports its median round
        runs: list = [[] for _ in jobs]
        for r in range(a.rounds):
            for j, (what, batch, wrk, fn, after) in enumerate(jobs):
                runs[j].append(self.attempt(what, batch, wrk, fn))
                if r == 0 and after is not None and not runs[j][-1].get("error"):
                    after()
        for (what, batch, wrk, _, _), got in zip(jobs, runs):
            self.record(what, batch, wrk, got)

    @staticmethod
    def _order(lines: list, paths: list) -> str:
        names = [rec["image"] for rec in lines]
        if names != paths:
            raise AssertionError(f"{len(names)} lines for {len(paths)} photos, or out of order")
        return f"{len(names)} lines, {sum(len(r['detections']) for r in lines)} detections"

    def report(self) -> None:
        a = self.args
        dev = torch.cuda.get_device_name() if self.cuda else (platform.processor() or "CPU")
        print()
        print(f"torch {torch.__version__}, {dev}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
              f"{Path(a.cfg).name} at {a.size}, {a.count} photos {a.width}x{a.height}, thresh {a.thresh}, "
              f"{a.rounds} round(s), {self.elapsed():.0f} s")
        print(f"{'what':<46} {'batch':>5} {'wrk':>3} {'images':>6} {'dets':>6} {'img/s':>8} {'wall/s':>8} "
              f"{'x base':>7} {'main ms':>7}")
        for r in self.rows:
            if r["error"]:
                print(f"{r['what']:<46} {r['batch']!s:>5} {r['workers']!s:>3} {'-':>6} {'-':>6} {'-':>8} {'-':>8} "
                      f"{'-':>7}  {r['error']}")
                continue
            xb = f"{r['x_baseline']:.2f}" if r["x_baseline"] else "-"
            dets = f"{r['dets']:.1f}" if r["dets"] is not None else "-"
            cpu = f"{r['main_cpu_ms']:.2f}" if r["main_cpu_ms"] is not None else "-"
            print(f"{r['what']:<46} {r['batch']!s:>5} {r['workers']!s:>3} {r['images']:>6} {dets:>6} {r['img_s']:8.1f} "
                  f"{r['wall_img_s']:8.1f} {xb:>7} {cpu:>7}")
        print("dets: detections per photo (random weights: more than a trained model finds on some photos); img/s: "
              "the stream alone (model loading excluded); wall/s: the whole command; x base: img/s over the baseline "
              "loop's; main ms: CPU time of this process (all its threads, not the decoding workers) per photo")
        failed = [c for c in self.checks if not c["ok"]]
        print(f"checks: {len(self.checks) - len(failed)} ok, {len(failed)} failed"
              + "".join(f"\n  FAILED {c['check']}: {c['detail']}" for c in failed))
        if a.json:
            write_text(a.json, json.dumps(dict(
                torch=torch.__version__, device=dev, cpus=os.cpu_count(), cfg=Path(a.cfg).name, size=a.size,
                count=a.count, width=a.width, height=a.height, rounds=a.rounds, seconds=self.elapsed(),
                checks=self.checks, rows=self.rows), indent=1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cfg", default=str(ROOT / "cfg" / "yolov3.cfg"))
    ap.add_argument("--size", type=int, default=416, help="network width and height")
    ap.add_argument("--count", type=int, default=2000, help="photos to write and run")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--baseline", type=int, help="photos the baseline loop runs (default: all; fewer make its "
                    "rate an estimate, as photos differ in detections)")
    ap.add_argument("--batch", type=int, help="the exact configuration's --batch (default: the command's)")
    ap.add_argument("--fast-batch", type=int, help="the fast configurations' --batch (default: 64 and 128)")
    ap.add_argument("--workers", type=int, help="decoding processes (default: the command's)")
    ap.add_argument("--thresh", type=float, help="score threshold (default: the command's, .5; --quick: .05)")
    ap.add_argument("--objectness-rate", type=float, default=0.0002,
                    help="random weights: fraction of predictions with objectness above .25 on the calibration photos")
    ap.add_argument("--class-shift", type=float, default=-3.0, help="random weights: added to the class logits")
    ap.add_argument("--nms", type=float, default=0.45)
    ap.add_argument("--rounds", type=int, default=1, help="run every configuration this many times, in turns; "
                    "each row reports its median round")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU even where CUDA is present")
    ap.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="yolov3-tiny at 96 on a few small photos: a smoke run")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of failing configurations")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.cfg, args.size, args.count, args.baseline = str(ROOT / "cfg" / "yolov3-tiny.cfg"), 96, 12, 12
        args.width, args.height = 160, 120
        args.workers = 1 if args.workers is None else args.workers
        args.fast_batch = args.fast_batch or 4
        args.thresh = 0.05 if args.thresh is None else args.thresh  # boxes to compare, from a tiny net
    args.thresh = 0.5 if args.thresh is None else args.thresh
    # the exact rows compute in float32 (the command turns PyTorch's default TF32 convolutions off)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    bench = Bench(args)
    try:
        bench.run()
    finally:
        bench.report()
    return 1 if any(not c["ok"] for c in bench.checks) or any(r["error"] for r in bench.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
