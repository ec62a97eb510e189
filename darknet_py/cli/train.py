"""``darknet-py detector train DATA CFG [WEIGHTS]`` and ``detector calc_anchors DATA``."""
from __future__ import annotations

from ..errors import UsageError


def run_train(args) -> int:
    from ..train.trainer import TrainOptions, train

    device = args.device
    if args.gpus is not None:
        gpus = [g for g in args.gpus.split(",") if g.strip()]
        if len(gpus) != 1:
            raise UsageError(f"-gpus {args.gpus}: for several GPUs run the same command under torchrun "
                             "(torchrun --nproc_per_node N -m darknet_py detector train ...)")
        device = f"cuda:{int(gpus[0])}"
    # device None: training uses the GPU when there is one (darknet_py.device's policy for training)
    res = train(args.data, args.cfg, args.weights, TrainOptions(
        device=device or "auto", workers=args.workers, clear=args.clear,
        max_batches=args.max_batches, backup=args.backup, save_every=args.save_every, amp=args.amp, seed=args.seed,
        on_bad_label=args.on_bad_label, regions=not args.quiet, time_limit=args.time_limit, overwrite=args.overwrite,
        map=args.map, map_every=args.map_every, chart=args.chart,
        log=lambda s: print(s, flush=True)))
    if res.main and res.final.exists():
        print(f"{res.iterations} iterations in {res.seconds:.1f} s, {res.seen} images seen; final weights {res.final}")
    return 0


def run_calc_anchors(args) -> int:
    from ..anchors import calc_anchors

    res = calc_anchors(args.data, args.num_of_clusters, args.width, args.height, on_bad=args.on_bad_label)
    for line in res.lines():
        print(line)
    return 0


__all__ = ["run_calc_anchors", "run_train"]
