#!/usr/bin/env python3
"""GPU benchmark of darknet-py's fast paths, self-checking, in one run (about 3-4 minutes on an H100).

1. Equality checks on the device first (seconds): batched letterbox and post-processing bit for
   bit against the per-image code, fp32 (TF32 off) against the CPU, CUDA graph replay against
   eager, the in-graph post-processing against the exact one, fp16 against fp32.
2. Timings: a large fp16 matmul (the ceiling, TFLOP/s); the plain eager fp32 model (the in-run
   baseline, run first, with PyTorch's default settings); FastDetector's network forward
   (fp32/fp16/bf16, batch 1/64/128, CUDA graph on/off, channels_last or not); the full pipeline
   from uint8 photos to final boxes (batch-1 latency and batched throughput); yolov3-tiny the same;
   torch.compile last, while the time budget lasts.

Every configuration is guarded: an error is recorded in its row and the run goes on. Prints a
table (ms per batch, img/s, speed-up over the eager fp32 baseline, % of the arithmetic floor:
Darknet's FLOP count at the measured matmul rate) and writes JSON with ``--json PATH``.
Weights are random and calibrated (darknet_py.random_weights); cfgs are this repository's.

    python tools/bench_gpu.py --json bench_gpu.json          # on the GPU
    python tools/bench_gpu.py --quick --json /tmp/b.json     # a CPU smoke run (seconds)
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from darknet_py.files import write_text  # noqa: E402
import darknet_py  # noqa: E402
from darknet_py.detector import detect_batch  # noqa: E402
from darknet_py.fast import FastDetector  # noqa: E402
from darknet_py.layers.head import decode_heads  # noqa: E402
from darknet_py.postprocess import StaticPostprocess, postprocess  # noqa: E402
from darknet_py.random_weights import randomize  # noqa: E402
from darknet_py.summary import summarize  # noqa: E402
from darknet_py.transforms import geometry_table, letterbox, letterbox_u8, prepare_batch  # noqa: E402

REF = ROOT.parent / "shared" / "darknet-reference"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _note(rec: dict, fd) -> None:
    """What actually ran (and any CUDA graph capture that fell back to eager)."""
    if fd is not None:
        rec["note"] = fd.describe() + (f"; GRAPH FALLBACK: {'; '.join(fd.graph_errors)[:300]}"
                                       if fd.graph_errors else "")


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.cuda = torch.cuda.is_available() and not args.cpu
        self.dev = torch.device("cuda" if self.cuda else "cpu")
        self.t0 = time.perf_counter()
        self.rows = []
        self.checks = []
        self.peak = {}
        self.tmp = Path(tempfile.mkdtemp())
        self.photo = self._photo()
        self.models = {}
        self.baseline = {}

    # -- helpers --------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def _photo(self) -> np.ndarray:
        p = REF / "pjreddie" / "data" / "dog.jpg"
        if p.exists():
            return darknet_py.imageio.load_image(p)[0]
        from darknet_py.synth import render_image
        return render_image(np.random.default_rng(0), 768, 576, 6)[0]

    def time_fn(self, fn, target_s: float) -> float:
        """Seconds per call: a short warm-up, then as many calls as fit ``target_s`` (min 3)."""
        fn()
        self.sync()
        t = time.perf_counter()
        fn()
        self.sync()
        one = max(time.perf_counter() - t, 1e-6)
        n = max(3, min(2000, int(target_s / one)))
        if self.quick:
            n = 2
        t = time.perf_counter()  # wall time: the pipeline rows include host work and syncs
        for _ in range(n):
            fn()
        self.sync()
        return (time.perf_counter() - t) / n

    def model(self, name: str):
        """(model on the device, letterboxed calibration photo (1,3,S,S) on the device, GFLOP/image)."""
        if name not in self.models:
            size = self.args.size
            text = (ROOT / "cfg" / f"{name}.cfg").read_text()
            text = re.sub(r"(?m)^width\s*=\s*\d+", f"width={size}", text, count=1)
            text = re.sub(r"(?m)^height\s*=\s*\d+", f"height={size}", text, count=1)
            cfg = self.tmp / f"{name}.cfg"
            cfg.write_text(text)
            x = letterbox(self.photo, size, size)[0][None]
            m = randomize(darknet_py.build_model(cfg), x, seed=1)  # on the CPU: randomize draws there
            m = m.to(self.dev).eval().to_channels_last()
            self.models[name] = (m, x.to(self.dev), summarize(cfg).bflops)
        return self.models[name]

    def row(self, model: str, what: str, batch: int, fn, *, gflop: float = 0.0, dtype: str = "fp32",
            baseline_key=None, target_s: float = 0.3, note: str = "", min_left: float = 0.0):
        """Time one configuration and record it; never raises."""
        rec = dict(model=model, what=what, batch=batch, dtype=dtype, ms=None, img_s=None, x_baseline=None,
                   pct_floor=None, note=note, error=None)
        if self.elapsed() > self.args.budget - min_left:
            rec["error"] = "skipped: time budget spent"
            self.rows.append(rec)
            return rec
        try:
            s = self.time_fn(fn, target_s)
            rec["ms"] = s * 1e3
            rec["img_s"] = batch / s
            if baseline_key is not None and baseline_key in self.baseline:
                rec["x_baseline"] = rec["img_s"] / self.baseline[baseline_key]
            peak = self.peak.get("fp32" if dtype == "fp32" else "fp16")
            if gflop and peak:
                rec["pct_floor"] = 100.0 * (gflop * batch / peak) / s
        except Exception as e:  # noqa: BLE001 - one failing configuration must not end the run
            rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            if self.args.verbose:
                traceback.print_exc()
            try:
                self.sync()
            except Exception:  # noqa: BLE001
                pass
        finally:
            if self.cuda:
                torch.cuda.empty_cache()
        self.rows.append(rec)
        status = rec["error"] or f"{rec['ms']:.3f} ms  {rec['img_s']:.0f} img/s"
        print(f"  [{self.elapsed():6.1f}s] {model:<12} {what:<44} b{batch:<4} {status}", flush=True)
        return rec

    def check(self, name: str, fn):
        try:
            detail = fn()
            ok = True
        except AssertionError as e:
            ok, detail = False, f"FAILED: {e}"
        except Exception as e:  # noqa: BLE001
            ok, detail = False, f"ERROR {type(e).__name__}: {str(e)[:300]}"
            if self.args.verbose:
                traceback.print_exc()
        self.checks.append(dict(check=name, ok=ok, detail=str(detail)))
        print(f"  check {'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)

    # -- 1. equality checks ---------------------------------------------------------------
    def run_checks(self):
        print("equality checks", flush=True)
        m, x, _ = self.model("yolov3-tiny")
        size = self.args.size
        old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
               torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        photos = [self.photo, np.ascontiguousarray(self.photo[:, ::-1]), self.photo[: self.photo.shape[0] // 2]]
        try:
            def letterbox_equal():
                for im in photos:
                    got, _ = letterbox_u8(torch.from_numpy(np.ascontiguousarray(im)).to(self.dev)[None], size, size)
                    assert torch.equal(got[0].cpu(), letterbox(im, size, size)[0]), im.shape
                return "bit-identical to transforms.letterbox (CPU)"
            self.check("letterbox_u8 on the device", letterbox_equal)

            xb, infos = prepare_batch(photos, size, size, device=self.dev)
            with torch.no_grad():
                outs = m(xb)

            def post_equal():
                n = 0
                for th in (0.5, 0.25):
                    # each photo alone, then the whole batch at once
                    want = [postprocess(m, [o[i:i + 1] for o in outs], [info], th, 0.45)[0]
                            for i, info in enumerate(infos)]
                    got = postprocess(m, outs, infos, th, 0.45)
                    n += sum(len(d) for d in want)
                    for a, b in zip(want, got):
                        for f in ("boxes", "scores", "classes", "objectness", "box_index"):
                            assert torch.equal(getattr(a, f), getattr(b, f)), f
                    boxes, obj, cls = decode_heads(outs, m.head_specs, size, size)
                    post = StaticPostprocess(len(infos), boxes.shape[1], cls.shape[2], th, 0.45, entry_cap=512)
                    st = post.unpack(post(boxes, obj, cls, geometry_table(infos, self.dev),
                                          torch.tensor(len(infos), device=self.dev)), len(infos))
                    assert st is not None, "static capacities exceeded"
                    for a, b in zip(want, st):
                        for f in ("boxes", "scores", "classes", "objectness", "box_index"):
                            assert torch.equal(getattr(a, f), getattr(b, f)), "static " + f
                return f"batch, photo by photo and fixed-shape post-processing bit-identical ({n} detections)"
            self.check("batch-wide post-processing on the device", post_equal)

            def fp32_vs_cpu():
                cpu = darknet_py.build_model(m.netdef)
                cpu.load_state_dict({k: v.cpu() for k, v in m.state_dict().items()})
                cpu = cpu.eval().to_channels_last()
                with torch.no_grad():
                    want = cpu(xb.cpu())
                got = FastDetector(m).forward(xb)
                err = max(float((a - b.cpu()).abs().max() / a.abs().max()) for a, b in zip(want, got))
                assert err < 1e-4, f"relative error {err:.2e}"
                return f"max relative difference {err:.2e} (< 1e-4)"
            self.check("FastDetector fp32 (TF32 off) vs CPU", fp32_vs_cpu)

            if self.cuda:
                def graph_vs_eager():
                    eager = FastDetector(m, dtype=torch.float16)
                    graph = FastDetector(m, dtype=torch.float16, cuda_graph=True, max_batch=4)
                    for n in (1, 2):
                        for a, b in zip(eager.forward(xb[:n]), graph.forward(xb[:n])):
                            assert torch.equal(a, b), f"forward batch {n}"
                        da = eager.detect_tensor(xb[:n], infos[:n], 0.3)
                        db = graph.detect_tensor(xb[:n], infos[:n], 0.3)
                        for a, b in zip(da, db):
                            for f in ("boxes", "scores", "classes", "objectness", "box_index"):
                                assert torch.equal(getattr(a, f), getattr(b, f)), f"detections batch {n} {f}"
                    assert not graph.graph_errors, graph.graph_errors
                    return f"bit-identical ({graph.describe()})"
                self.check("CUDA graph replay (+ in-graph postprocess) vs eager, fp16", graph_vs_eager)

            def half_vs_float():
                ref = FastDetector(m).forward(xb)
                msg = []
                for name in ("fp16",) if self.quick else ("fp16", "bf16"):
                    got = FastDetector(m, dtype=DTYPES[name]).forward(xb)
                    err = max(float((a - b).abs().max() / a.abs().max()) for a, b in zip(ref, got))
                    msg.append(f"{name} {err:.1e}")
                    assert err < (2e-2 if name == "fp16" else 1.5e-1), msg
                return "head outputs relative to scale: " + ", ".join(msg)
            self.check("reduced precision vs fp32 (yolov3-tiny, random weights)", half_vs_float)
        finally:
            (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = old

    # -- 2. timings -----------------------------------------------------------------------
    def ceiling(self):
        n = 512 if self.quick else 8192
        for key, dt in (("fp16", torch.float16), ("fp32", torch.float32)):
            mats = [torch.randn(n, n, device=self.dev, dtype=dt) for _ in range(2)]
            rec = self.row("matmul", f"{n}x{n}x{n} {key}" + (" (TF32 per torch setting)" if key == "fp32" else ""),
                           1, lambda: torch.mm(*mats), dtype=key, target_s=0.2)
            if rec["ms"]:
                self.peak[key] = 2 * n ** 3 / (rec["ms"] / 1e3) / 1e9  # GFLOP/s
                rec["note"] = f"{self.peak[key] / 1e3:.1f} TFLOP/s"
            mats.clear()

    def run_baseline(self, name: str, batches):
        m, x, gf = self.model(name)
        for b in batches:
            xb = x.expand(b, -1, -1, -1).contiguous()

            def fn():
                with torch.inference_mode():
                    return m(xb)
            rec = self.row(name, "baseline: model(x) eager fp32", b, fn, gflop=gf)
            if rec["img_s"]:
                self.baseline[(name, b)] = rec["img_s"]
        big = max(batches)
        for b in (128, 256):  # larger batches compare with the largest baseline batch
            if (name, big) in self.baseline:
                self.baseline.setdefault((name, b), self.baseline[(name, big)])

    def run_forward(self, name: str, configs, min_left: float = 0.0):
        m, x, gf = self.model(name)
        for dtype, batch, graph, cl, comp in configs:
            label = f"forward {dtype}{' graph' if graph else ''}{'' if cl else ' NCHW'}{' compile' if comp else ''}"
            state = {}

            def fn():
                if "fd" not in state:
                    state["fd"] = FastDetector(m, dtype=DTYPES[dtype], cuda_graph=graph, channels_last=cl,
                                               compile=comp, max_batch=batch)
                    state["x"] = x.expand(batch, -1, -1, -1).contiguous()
                return state["fd"]._run(state["x"])
            rec = self.row(name, label, batch, fn, gflop=gf, dtype=dtype, baseline_key=(name, batch),
                           target_s=0.25, min_left=min_left)
            _note(rec, state.get("fd"))
            state.clear()

    def run_pipeline(self, name: str, dtype: str, batches, graph: bool = True):
        """Full pipeline: uint8 photos -> final detections in photo pixels."""
        m, x, gf = self.model(name)
        size = self.args.size
        infos = [letterbox(self.photo, size, size)[1]]
        for b in batches:
            self._pipeline_rows(name, m, x, gf, dtype, b, graph, size, infos)

    def _pipeline_rows(self, name, m, x, gf, dtype, b, graph, size, infos):
        try:
            fd = FastDetector(m, dtype=DTYPES[dtype], cuda_graph=graph, max_batch=max(b, 1))
        except Exception as e:  # noqa: BLE001
            self.rows.append(dict(model=name, what=f"pipeline {dtype}", batch=b, dtype=dtype, ms=None, img_s=None,
                                  x_baseline=None, pct_floor=None, note="", error=f"{type(e).__name__}: {e}"))
            return
        tag = f"{dtype}{' graph' if graph else ''}"
        if b == 1:
            xb = x.to(torch.float32)
            rec = self.row(name, f"letterboxed tensor -> detections {tag}", 1,
                           lambda: fd.detect_tensor(xb, infos, 0.5, 0.45), gflop=gf, dtype=dtype,
                           baseline_key=(name, 1))
            _note(rec, fd)
        photos = [self.photo] * b
        self.row(name, f"uint8 numpy photos -> detections {tag}", b,
                 lambda: fd.detect_batch(photos, 0.5, 0.45), gflop=gf, dtype=dtype, baseline_key=(name, b))
        if self.cuda:
            host = torch.from_numpy(np.stack(photos)).pin_memory()

            def from_pinned():
                u8 = host.to(self.dev, non_blocking=True)
                lb, info = letterbox_u8(u8, size, size, letterboxed=fd.letterboxed)
                return fd.detect_tensor(lb, [info] * b, 0.5, 0.45)
            self.row(name, f"uint8 pinned batch -> detections {tag}", b, from_pinned, gflop=gf, dtype=dtype,
                     baseline_key=(name, b))

    def run_latency(self, name: str, dtype: str, compile: bool = False, min_left: float = 0.0):
        """Batch 1, letterboxed tensor -> final detections (the latency goal), CUDA graph on."""
        m, x, gf = self.model(name)
        infos = [letterbox(self.photo, self.args.size, self.args.size)[1]]
        state = {}

        def fn():
            if "fd" not in state:
                state["fd"] = FastDetector(m, dtype=DTYPES[dtype], cuda_graph=True, compile=compile, max_batch=1)
            return state["fd"].detect_tensor(x, infos, 0.5, 0.45)
        rec = self.row(name, f"letterboxed tensor -> detections {dtype} graph{' compile' if compile else ''}", 1, fn,
                       gflop=gf, dtype=dtype, baseline_key=(name, 1), min_left=min_left)
        _note(rec, state.get("fd"))
        state.clear()

    def run_baseline_pipeline(self, name: str, batches):
        m, _, gf = self.model(name)
        for b in batches:
            photos = [self.photo] * b
            self.row(name, "baseline: detector.detect_batch fp32", b, lambda: detect_batch(m, photos, 0.5, 0.45),
                     gflop=gf)

    # -- report ---------------------------------------------------------------------------
    def report(self):
        print()
        dev = torch.cuda.get_device_name() if self.cuda else platform.processor() or "CPU"
        print(f"torch {torch.__version__}, {dev}, cuDNN {torch.backends.cudnn.version() if self.cuda else '-'}, "
              f"TF32 conv {torch.backends.cudnn.allow_tf32} matmul {torch.backends.cuda.matmul.allow_tf32}, "
              f"size {self.args.size}, {self.elapsed():.0f} s")
        print(f"{'model':<12} {'what':<44} {'batch':>5} {'ms':>9} {'img/s':>9} {'x base':>7} {'% floor':>7}  note")
        for r in self.rows:
            if r["error"]:
                print(f"{r['model']:<12} {r['what']:<44} {r['batch']:>5} {'-':>9} {'-':>9} {'-':>7} {'-':>7}  "
                      f"{r['error']}")
                continue
            xb = f"{r['x_baseline']:.2f}" if r["x_baseline"] else "-"
            pf = f"{r['pct_floor']:.1f}" if r["pct_floor"] else "-"
            print(f"{r['model']:<12} {r['what']:<44} {r['batch']:>5} {r['ms']:9.3f} {r['img_s']:9.0f} {xb:>7} {pf:>7}  "
                  f"{r['note']}")
        print("floor: Darknet's FLOPs (darknet_py.summary) at the measured matmul rate (fp16 rows: the fp16 matmul, "
              "fp32 rows: the fp32 matmul)")
        failed = [c for c in self.checks if not c["ok"]]
        print(f"checks: {len(self.checks) - len(failed)} ok, {len(failed)} failed"
              + "".join(f"\n  FAILED {c['check']}: {c['detail']}" for c in failed))
        if self.args.json:
            write_text(self.args.json, json.dumps(dict(
                torch=torch.__version__, device=dev, size=self.args.size, quick=self.quick, seconds=self.elapsed(),
                tf32_conv=torch.backends.cudnn.allow_tf32, peak_gflops=self.peak, checks=self.checks,
                rows=self.rows), indent=1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and one iteration: a smoke run (CPU)")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU even where CUDA is present")
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--budget", type=float, default=190.0, help="seconds after which configurations are skipped")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile configurations")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of failing configurations")
    ap.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.size = min(args.size, 96)
    bench = Bench(args)
    print(f"device {bench.dev}, size {args.size}{' (quick)' if args.quick else ''}", flush=True)
    try:
        bench.run_checks()
        print("timings", flush=True)
        bench.ceiling()
        if args.quick:
            bench.run_baseline("yolov3-tiny", [1, 2])
            bench.run_forward("yolov3-tiny", [("fp32", 1, False, True, False), ("fp32", 2, False, True, False)])
            bench.run_pipeline("yolov3-tiny", "fp32", [1, 2], graph=False)
            bench.run_baseline_pipeline("yolov3-tiny", [1])
        else:
            v3, tiny = "yolov3", "yolov3-tiny"
            # the baseline first, with PyTorch's defaults (FastDetector turns cudnn.benchmark on)
            bench.run_baseline(v3, [1, 64])
            bench.run_baseline(tiny, [1, 64])
            bench.run_baseline_pipeline(v3, [1])
            graph = bench.cuda
            bench.run_forward(v3, [("fp16", 128, graph, True, False), ("fp16", 64, graph, True, False),
                                   ("fp16", 1, graph, True, False), ("bf16", 128, graph, True, False),
                                   ("bf16", 1, graph, True, False),
                                   ("fp32", 1, graph, True, False), ("fp32", 64, graph, True, False),
                                   ("fp16", 1, False, True, False), ("fp16", 128, False, True, False),
                                   ("fp32", 1, False, True, False), ("fp32", 64, False, True, False),
                                   ("fp16", 64, False, False, False)])
            bench.run_pipeline(v3, "fp16", [1, 128], graph=graph)
            bench.run_forward(tiny, [("fp16", 256, graph, True, False), ("fp16", 128, graph, True, False),
                                     ("fp16", 1, graph, True, False), ("bf16", 256, graph, True, False),
                                     ("fp32", 64, graph, True, False), ("fp16", 256, False, True, False)])
            bench.run_pipeline(tiny, "fp16", [1, 256], graph=graph)
            if not args.no_compile and bench.cuda:
                # inductor fuses the elementwise tails (leaky + residual add); each shape compiles once
                # (a compilation takes about a minute: each starts only with enough budget left)
                bench.run_forward(v3, [("fp16", 128, True, True, True)], min_left=100)
                bench.run_forward(tiny, [("fp16", 256, True, True, True)], min_left=60)
                bench.run_latency(v3, "fp16", compile=True, min_left=90)
    finally:
        bench.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
