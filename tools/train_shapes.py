#!/usr/bin/env python3
"""Train the shipped model, cfg/yolov3-tiny-shapes.cfg, on generated shapes, and measure it.

    python tools/train_shapes.py --out runs/shapes --train 3000 --device cuda --workers 14
    python tools/train_shapes.py --out runs/shapes --evaluate weights/yolov3-tiny-shapes.weights

Steps: ``darknet-py synth`` writes the training images and, with another seed, the held-out
images; ``detector train`` trains with the cfg's own schedule; ``detector map`` measures the
final weights on the held-out images. A JSON summary with the
command, iterations, time, device and every metric is written beside the weights.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from darknet_py.files import write_text  # noqa: E402

CFG = ROOT / "cfg" / "yolov3-tiny-shapes.cfg"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/shapes", help="dataset, checkpoints and summary folder")
    ap.add_argument("--train", type=int, default=3000, help="training images to generate")
    ap.add_argument("--valid", type=int, default=500, help="held-out images to evaluate on")
    ap.add_argument("--seed", type=int, default=1, help="training data seed (held-out images: seed + 1000)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--time-limit", type=float, help="stop training after this many seconds")
    ap.add_argument("--resume", help="continue training from these weights (their 'seen' says where)")
    ap.add_argument("--evaluate", help="only evaluate these weights on the held-out images")
    ap.add_argument("--no-eval", action="store_true", help="train only (evaluation needs pycocotools)")
    args = ap.parse_args()

    import torch

    from darknet_py.synth import make_dataset
    from darknet_py.train.trainer import TrainOptions, train

    out = Path(args.out)
    start = time.perf_counter()
    summary = {"cfg": str(CFG.relative_to(ROOT)), "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}
    if not args.evaluate:
        ds = make_dataset(out / "data", train=args.train, valid=0, seed=args.seed)
        summary["training_data"] = {"images": ds.train_images, "seed": args.seed}
        print(f"dataset: {ds.train_images} training images in {time.perf_counter() - start:.1f} s", flush=True)
    # Held out: another seed of the same generator, never seen in training.
    held = make_dataset(out / "heldout", train=0, valid=args.valid, seed=args.seed + 1000) if args.valid else None
    if held is not None:
        summary["heldout_data"] = {"images": held.valid_images, "seed": args.seed + 1000}
    weights = Path(args.evaluate) if args.evaluate else None
    if weights is None:
        res = train(ds.data, CFG, args.resume, options=TrainOptions(device=args.device, workers=args.workers,
                                                       backup=str(out / "backup"), regions=False,
                                                       time_limit=args.time_limit,
                                                       log=lambda s: print(s, flush=True)))
        weights = res.final
        dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                           (args.device if args.device != "auto" else "cpu"))
        summary["training"] = {"iterations": res.iterations, "images_seen": res.seen, "seconds": round(res.seconds, 1),
                               "final_avg_loss": res.loss, "device": torch.cuda.get_device_name(dev)
                               if dev.type == "cuda" else platform.processor() or "cpu",
                               "torch": torch.__version__}
    if not args.no_eval and held is not None:
        from darknet_py.validate import detector_map

        t = time.perf_counter()
        report = detector_map(held.data, CFG, weights, device="cuda" if torch.cuda.is_available() else "cpu").report
        for line in report.lines():
            print(line)
        summary["evaluation"] = {"weights": str(weights), "seconds": round(time.perf_counter() - t, 1),
                                 **report.as_dict()}
    path = out / "summary.json"
    write_text(path, json.dumps(summary, indent=1) + "\n")  # atomic, never over an input
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
