#!/usr/bin/env python3
"""Measure what int8 costs on the two models darknet-py ships or references, for int8 ONNX
(darknet_py.export.int8, onnxruntime) and int8 TFLite (darknet_py.export.tflite, LiteRT).

    python tools/measure_int8.py --out runs/int8 shapes    # mAP of fp32 and int8 on held-out photos
    python tools/measure_int8.py --out runs/int8 tiny      # official yolov3-tiny on the 7 sample photos
    python tools/measure_int8.py --backend both both       # both models, both backends

Both backends get the same calibration photos and the same sensitivity rule
(darknet_py.export.sensitivity); detections are matched at darknet_py.export.verify.INT8_MATCH_IOU
(and, for the record, at .5).

shapes: cfg/yolov3-tiny-shapes.cfg + weights/yolov3-tiny-shapes.weights; a generated set
(darknet_py.synth.make_dataset, --train/--valid photos, a seed the model never trained on) calibrates
on its train list and is evaluated on its valid list, before (PyTorch) and after (the int8 file in
onnxruntime), with detector map's own code (darknet_py.export.accuracy).

tiny: the official COCO yolov3-tiny. There is no COCO set here, so it calibrates on what there is:
the 7 sample photos of the Darknet reference tree, each also flipped and cropped (4 crops), plus
generated shapes photos; detections are then matched against PyTorch on the 7 photos. The bias:
the verified photos are among the calibration photos (in-sample); --leave-one-out calibrates 7
times, each time without one photo and its crops, and verifies on that photo alone (out-of-sample).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from darknet_py.files import write_bytes, write_text  # noqa: E402

REF = ROOT.parent / "shared" / "darknet-reference"


def _median_ms(run, xs) -> float:
    import statistics
    run(xs[0])
    times = []
    for _ in range(3):
        for x in xs:
            t = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - t)
    return round(1000 * statistics.median(times), 1)


def speed_tflite(model, int8_path: Path, out: Path, photos) -> dict:
    """LiteRT CPU, one thread: median ms per photo of the float32 TFLite file and of the int8 one."""
    from darknet_py.export.calibrate import prepared_batches
    from darknet_py.export.tflite import export_tflite, tflite_runner

    fp32 = out / f"{int8_path.stem}-fp32.tflite"
    export_tflite(model, fp32)
    xs = list(prepared_batches(model, photos))
    result = {f"{name}_ms_per_photo": _median_ms(tflite_runner(path, num_threads=1), xs)
              for name, path in (("fp32", fp32), ("int8", int8_path))}
    print(f"LiteRT CPU, 1 thread: float32 {result['fp32_ms_per_photo']} ms, int8 {result['int8_ms_per_photo']} ms "
          "per photo", flush=True)
    return result


def speed(model, int8_path: Path, out: Path, photos) -> dict:
    """onnxruntime CPU, one thread: median ms per photo of the float32 export and of the int8 file."""
    import onnxruntime as ort

    from darknet_py.export import export_onnx
    from darknet_py.export.calibrate import prepared_batches
    from darknet_py.export.int8 import session_runner

    fp32 = out / f"{int8_path.stem}-fp32.onnx"
    export_onnx(model, fp32, dynamic=True)
    xs = list(prepared_batches(model, photos))
    result = {}
    for name, path in (("fp32", fp32), ("int8", int8_path)):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        run = session_runner(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]))
        result[f"{name}_ms_per_photo"] = _median_ms(run, xs)
    print(f"onnxruntime CPU, 1 thread: float32 {result['fp32_ms_per_photo']} ms, int8 {result['int8_ms_per_photo']} ms "
          "per photo", flush=True)
    return result


def shapes(args, out: Path) -> dict:
    import darknet_py
    from darknet_py.export.calibrate import listed_photos, load_photos
    from darknet_py.export.int8 import export_onnx_int8
    from darknet_py.synth import make_dataset

    ds = make_dataset(out / "shapes-data", train=args.train, valid=args.valid, seed=args.seed, overwrite=True)
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny-shapes.cfg", ROOT / "weights" / "yolov3-tiny-shapes.weights")
    start = time.perf_counter()
    rep = export_onnx_int8(model, out / "yolov3-tiny-shapes-int8.onnx", ds.data, args.calib, evaluate=True,
                           calibration=args.calibration, min_layer_db=args.min_layer_db)
    lines = rep.lines()
    print("\n".join(lines))
    return {"model": "yolov3-tiny-shapes", "seed": args.seed, "calib_images": rep.calib_images,
            "valid_images": rep.evaluated_images, "map50_fp32": rep.map_before, "map50_int8": rep.map_after,
            "coco_ap_fp32": rep.coco_ap_before, "coco_ap_int8": rep.coco_ap_after,
            "map50_change_points": 100 * (rep.map_after - rep.map_before), "float_layers": rep.float_layers,
            "matched": rep.matched, "missing": rep.missing, "extra": rep.extra, "seconds": time.perf_counter() - start,
            "sensitivity_db": {str(s.layer): round(s.sqnr_db, 2) for s in rep.sensitivity}, "report": lines,
            "speed": speed(model, out / "yolov3-tiny-shapes-int8.onnx", out,
                           load_photos(listed_photos(ds.data, "valid", 8)))}


def _calibration_data(folder: Path, photos, shapes_list: list[str]) -> Path:
    import cv2

    from darknet_py.export.calibrate import framings

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, rgb in photos:
        for i, v in enumerate(framings(rgb)):
            p = folder / f"{Path(name).stem}_{i}.jpg"
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(v, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            assert ok
            write_bytes(p, buf.tobytes())
            lines.append(str(p))
    lines += shapes_list
    write_text(folder / "train.txt", "\n".join(lines) + "\n")
    write_text(folder / "calib.data", f"classes = 80\ntrain = {folder / 'train.txt'}\n")
    return folder / "calib.data"


def tiny(args, out: Path) -> dict:
    import darknet_py
    from darknet_py.export.calibrate import load_photos
    from darknet_py.export.int8 import export_onnx_int8
    from darknet_py.export.verify import Match
    from darknet_py.synth import make_dataset

    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny.cfg", REF / "pretrained" / "yolov3-tiny.weights")
    photos = load_photos(sorted((REF / "pjreddie" / "data").glob("*.jpg")))
    ds = make_dataset(out / "tiny-shapes", train=args.tiny_shapes, valid=0, seed=args.seed, overwrite=True)
    shapes_list = [str(ds.root / s) for s in ds.train_list.read_text().split("\n") if s]
    result: dict = {"model": "yolov3-tiny (COCO)", "photos": [n for n, _ in photos],
                    "calibration": f"7 sample photos x 6 framings + {len(shapes_list)} generated shapes photos"}
    start = time.perf_counter()
    data = _calibration_data(out / "tiny-calib-all", photos, shapes_list)
    n = 6 * len(photos) + len(shapes_list)
    rep = export_onnx_int8(model, out / "yolov3-tiny-int8.onnx", data, n, photos=photos, calibration=args.calibration,
                           min_layer_db=args.min_layer_db)
    print("\n".join(rep.lines()))
    result["in_sample"] = {"matched": rep.matched, "missing": rep.missing, "extra": rep.extra,
                           "matched_fraction": rep.matched_fraction, "match_iou": rep.match_iou,
                           "float_layers": rep.float_layers, "report": rep.lines(),
                           "sensitivity_db": {str(s.layer): round(s.sqnr_db, 2) for s in rep.sensitivity},
                           "per_photo": {p.name: [p.match.matched, p.match.missing, p.match.extra]
                                         for p in rep.verification.photos}}
    result["speed"] = speed(model, out / "yolov3-tiny-int8.onnx", out, photos)
    if args.leave_one_out:
        total = Match()
        per = {}
        for i, held in enumerate(photos):
            rest = photos[:i] + photos[i + 1:]
            data = _calibration_data(out / f"tiny-calib-without-{i}", rest, shapes_list)
            r = export_onnx_int8(model, out / f"yolov3-tiny-int8-without-{i}.onnx", data,
                                 6 * len(rest) + len(shapes_list), photos=[held], calibration=args.calibration,
                                 min_layer_db=args.min_layer_db, min_matched=0.0)
            m = r.verification.total
            total += m
            per[held[0]] = [m.matched, m.missing, m.extra]
            print(f"without {Path(held[0]).name}: {m.matched} matched, {m.missing} missing, {m.extra} extra",
                  flush=True)
        result["leave_one_out"] = {"matched": total.matched, "missing": total.missing, "extra": total.extra,
                                   "matched_fraction": total.matched_fraction, "per_photo": per}
    result["seconds"] = time.perf_counter() - start
    return result


def _tflite_int8(model, path: Path, calibration, calib_images: int, photos, args):
    """export_tflite int8 with the tool's sensitivity threshold; (report, matched at .5)."""
    from darknet_py.export.tflite import export_tflite, tflite_runner
    from darknet_py.export.verify import verify_runner

    rep = export_tflite(model, path, quantize="int8", calibration=calibration, calib_images=calib_images,
                        photos=photos, min_layer_db=args.min_layer_db, num_threads=1)
    print("\n".join(rep.lines()), flush=True)
    at_half = verify_runner(model, tflite_runner(path, num_threads=1), photos, iou=0.5).total
    return rep, at_half


def _tflite_summary(rep, at_half) -> dict:
    t = rep.verification.total
    return {"matched": t.matched, "missing": t.missing, "extra": t.extra, "matched_fraction": t.matched_fraction,
            "match_iou": rep.verification.iou, "matched_at_0.5": at_half.matched, "extra_at_0.5": at_half.extra,
            "float_layers": rep.float_layers, "heads_sqnr_db": round(rep.heads_sqnr_db, 2), "report": rep.lines(),
            "sensitivity_db": {str(s.layer): round(s.sqnr_db, 2) for s in rep.sensitivity},
            "per_photo": {p.name: [p.match.matched, p.match.missing, p.match.extra] for p in rep.verification.photos}}


def shapes_tflite(args, out: Path) -> dict:
    import darknet_py
    from darknet_py.export.accuracy import compare_accuracy
    from darknet_py.export.calibrate import listed_photos, load_photos
    from darknet_py.export.tflite import tflite_runner
    from darknet_py.synth import make_dataset

    ds = make_dataset(out / "shapes-data", train=args.train, valid=args.valid, seed=args.seed, overwrite=True)
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny-shapes.cfg", ROOT / "weights" / "yolov3-tiny-shapes.weights")
    path = out / "yolov3-tiny-shapes-int8.tflite"
    start = time.perf_counter()
    photos = load_photos(listed_photos(ds.data, "valid", 8))
    rep, at_half = _tflite_int8(model, path, ds.data, args.calib, photos, args)
    seconds = time.perf_counter() - start
    cmp = compare_accuracy(model, tflite_runner(path, num_threads=1), ds.data)
    print("\n".join(cmp.lines("TFLite int8")), flush=True)
    return {"model": "yolov3-tiny-shapes", "backend": "tflite", "seed": args.seed, "calib_images": args.calib,
            "valid_images": cmp.after.images, "map50_fp32": cmp.before.map50, "map50_int8": cmp.after.map50,
            "coco_ap_fp32": cmp.before.coco_ap, "coco_ap_int8": cmp.after.coco_ap,
            "map50_change_points": 100 * (cmp.after.map50 - cmp.before.map50), "export_seconds": seconds,
            **_tflite_summary(rep, at_half), "speed": speed_tflite(model, path, out, photos)}


def tiny_tflite(args, out: Path) -> dict:
    import darknet_py
    from darknet_py.export.calibrate import load_photos
    from darknet_py.synth import make_dataset

    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny.cfg", REF / "pretrained" / "yolov3-tiny.weights")
    photos = load_photos(sorted((REF / "pjreddie" / "data").glob("*.jpg")))
    ds = make_dataset(out / "tiny-shapes", train=args.tiny_shapes, valid=0, seed=args.seed, overwrite=True)
    shapes_list = [str(ds.root / s) for s in ds.train_list.read_text().split("\n") if s]
    data = _calibration_data(out / "tiny-calib-all", photos, shapes_list)
    start = time.perf_counter()
    path = out / "yolov3-tiny-int8.tflite"
    rep, at_half = _tflite_int8(model, path, data, 6 * len(photos) + len(shapes_list), photos, args)
    return {"model": "yolov3-tiny (COCO)", "backend": "tflite", "photos": [n for n, _ in photos],
            "calibration": f"7 sample photos x 6 framings + {len(shapes_list)} generated shapes photos",
            "in_sample": _tflite_summary(rep, at_half), "export_seconds": time.perf_counter() - start,
            "speed": speed_tflite(model, path, out, photos)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["shapes", "tiny", "both"])
    ap.add_argument("--out", default="runs/int8")
    ap.add_argument("--train", type=int, default=100, help="shapes: generated calibration photos")
    ap.add_argument("--valid", type=int, default=100, help="shapes: generated held-out photos")
    ap.add_argument("--calib", type=int, default=64, help="shapes: calibration photos used of --train")
    ap.add_argument("--seed", type=int, default=2026, help="generator seed (the shipped model trained on seed 1)")
    ap.add_argument("--tiny-shapes", type=int, default=22, help="tiny: generated photos added to the calibration")
    ap.add_argument("--backend", default="onnx", choices=["onnx", "tflite", "both"],
                    help="int8 ONNX (onnxruntime), int8 TFLite (LiteRT) or both")
    ap.add_argument("--leave-one-out", action="store_true",
                    help="tiny, ONNX: also the out-of-sample check (7 calibrations)")
    ap.add_argument("--calibration", default="minmax", choices=["minmax", "moving-average", "entropy", "percentile"])
    ap.add_argument("--min-layer-db", type=float, default=25.0, help="sensitivity threshold (export_onnx_int8)")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    onnx, tflite = args.backend in ("onnx", "both"), args.backend in ("tflite", "both")
    if args.what in ("shapes", "both"):
        if onnx:
            summary["shapes"] = shapes(args, out)
        if tflite:
            summary["shapes_tflite"] = shapes_tflite(args, out)
    if args.what in ("tiny", "both"):
        if onnx:
            summary["tiny"] = tiny(args, out)
        if tflite:
            summary["tiny_tflite"] = tiny_tflite(args, out)
    suffix = "" if args.backend == "onnx" else f"-{args.backend}"
    write_text(out / f"int8-{args.what}{suffix}.json", json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
