"""``darknet-py detector train DATA CFG [WEIGHTS]``: Darknet's ``train_detector`` loop.

One iteration is one weight update of ``batch`` images, seen in ``subdivisions`` forward passes
(gradient accumulation). The update is Darknet's SGD: with the loss summed over images and
divided by ``batch``, ``w += lr/batch * v`` with ``v = momentum*v - grad - decay*batch*w`` is
exactly ``torch.optim.SGD(lr, momentum, weight_decay=decay)``, decay on convolution weights only
(``update_convolutional_layer``). The rate of update ``i`` is ``get_current_rate`` after ``seen``
has grown by that update's images, as in Darknet, so the first update of a burn-in is
``lr * (1/burn_in)**power``.

Checkpoints are Darknet ``.weights`` files in the ``backup`` folder, written atomically (a
temporary file, fsync, rename): ``<cfg>_last.weights`` every ``save_every`` (Darknet: 100)
iterations, ``<cfg>_<N>.weights`` at Darknet's schedule (every 100 below 1000, then every
10000), ``<cfg>_final.weights`` at the end. ``seen`` in the header says where training is, so a
run resumed from any of them continues the schedule and the multi-scale sequence.

With ``map`` (AlexeyAB's ``-map``) the mAP@0.5 on the ``valid`` list is computed during training
(darknet_py.train.progress says when), printed as AlexeyAB prints it, ``<cfg>_best.weights`` kept
at each new best, and loss and mAP drawn into ``chart`` (default ``chart.png``, needs matplotlib).
Every file a run may write is checked before the first iteration.

Under ``torchrun`` the same command trains data-parallel (DDP: NCCL on GPUs, gloo on CPUs). The
cfg's ``batch`` stays the global batch, split over the processes, so one process or eight train
the same schedule. (Darknet's ``-gpus`` gives every GPU a whole ``batch`` instead.)
"""
from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from ..checkpoint import is_checkpoint, load_state, read_checkpoint
from ..checks import check_count, check_positive
from ..config.data import read_data_config
from ..config.lists import read_image_list
from ..device import Distributed
from ..errors import DataError
from ..graph import DarknetModel, build_model
from ..files import OutputLock, OutputPlan, release_input
from ..layers.convolutional import ConvBlock
from ..weights import Header, layers_in_file
from .data import AugmentConfig, DetectionDataset, MultiScaleBatchSampler, make_loader
from .loss import yolo_loss
from .progress import Chart, has_matplotlib, next_map_at, training_map
from .schedule import TrainConfig, train_config


@dataclass
class TrainOptions:
    device: str = "auto"
    workers: int | None = None           # loader processes; None: default_workers()
    clear: bool = False                  # Darknet's -clear: start at seen = 0 whatever the weights say
    max_batches: int | None = None    # override [net] max_batches
    backup: str | None = None         # override the .data file's backup folder
    save_every: int = 100                # <cfg>_last.weights interval
    amp: bool | None = None           # mixed precision; None: on for CUDA
    seed: int = 0
    on_bad_label: str = "error"
    regions: bool = True                 # print Darknet's per-head "Region" lines
    time_limit: float | None = None   # seconds: stop after the iteration that passes it (saved, resumable)
    overwrite: bool = False              # replace backup files of an earlier run (a resumed run always may)
    map: bool = False                    # AlexeyAB's -map: mAP@0.5 on the valid list, <cfg>_best.weights, chart
    map_every: int | None = None      # iterations between mAP calculations; None: AlexeyAB's schedule
    chart: str | None = None          # with map: the chart's file; None: chart.png in the current folder
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        check_count("workers", self.workers, 0)
        check_count("max_batches", self.max_batches, 1)
        check_count("save_every", self.save_every, 1)
        check_count("seed", self.seed, 0)
        check_count("map_every", self.map_every, 1)
        check_positive("time_limit", self.time_limit)


@dataclass
class TrainResult:
    final: Path
    iterations: int       # updates done by this run
    seen: int             # images seen in total (the header's value)
    seconds: float
    loss: float           # Darknet's running "avg" loss at the end
    main: bool = True     # this process writes the files and the summary (rank 0 under torchrun)


MAX_DEFAULT_WORKERS = 4
CHART = "chart.png"  # AlexeyAB's name, in the current folder


def default_workers() -> int:
    """Loader processes by default: 4, but no more than the CPUs this process may run on (what
    PyTorch's DataLoader checks before warning that the workers exceed them)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cpus))


def basecfg(path) -> str:
    """Darknet's ``basecfg``: the cfg file name up to its first '.' (checkpoint names start with it)."""
    return Path(os.fspath(path)).name.split(".", 1)[0]


def darknet_init(model: DarknetModel, seed: int) -> None:
    """Darknet's initial weights (``make_convolutional_layer``): N(0, 1) * sqrt(2/fan_in) kernels,
    zero biases, BN scales 1 and statistics 0/1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            if isinstance(layer, ConvBlock):
                w = layer.conv.weight
                fan_in = w.shape[1] * w.shape[2] * w.shape[3]
                w.copy_(torch.randn(w.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                if layer.conv.bias is not None:
                    layer.conv.bias.zero_()
                if layer.bn is not None:
                    layer.bn.weight.fill_(1.0)
                    layer.bn.bias.zero_()
                    layer.bn.running_mean.zero_()
                    layer.bn.running_var.fill_(1.0)


def load_start_weights(model: DarknetModel, path, log: Callable[[str], None]) -> Header:
    """A full weights file, a backbone that ends on a layer boundary (darknet53.conv.74: loaded as
    far as it goes, like Darknet), or a darknet-py checkpoint."""
    if is_checkpoint(path):
        payload = read_checkpoint(path)
        load_state(model, payload["state_dict"], os.fspath(path))
        log(f"Loading checkpoint {path}")
        return Header(*[int(v) for v in payload["header"]]) if payload.get("header") else Header()
    n = layers_in_file(model, path)
    upto = n if n is not None and n < len(model.layers) else None
    header = model.load_weights(path, upto=upto).header
    log(f"Loading weights from {path}: " + (f"{n} of {len(model.layers)} layers (a backbone)" if upto is not None
                                            else f"all {len(model.layers)} layers") + f", seen {header.seen}")
    return header


def _check_in_sync(ctx: Distributed, model: torch.nn.Module, device: torch.device) -> None:
    """Every process must end with the same weights; DDP guarantees it, this proves it."""
    if not ctx.active:
        return
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for p in model.parameters():
        total[0] += p.detach().double().sum()
        total[1] += (p.detach().double() ** 2).sum()
    gathered = [torch.zeros_like(total) for _ in range(ctx.world)]
    dist.all_gather(gathered, total)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError(f"processes ended with different weights: {[g.tolist() for g in gathered]}")


def _optimizer(model: DarknetModel, tc: TrainConfig) -> torch.optim.SGD:
    decayed, plain = [], []
    for layer in model.layers:
        for name, p in layer.named_parameters():
            (decayed if isinstance(layer, ConvBlock) and name == "conv.weight" else plain).append(p)
    return torch.optim.SGD([{"params": decayed, "weight_decay": tc.decay}, {"params": plain, "weight_decay": 0.0}],
                           lr=tc.learning_rate, momentum=tc.momentum)


def _save(model: DarknetModel, path: Path, seen: int) -> None:
    model.header = replace(model.header or Header(), seen=int(seen))
    model.save_weights(path)


def train(data_path, cfg, weights=None, options: TrainOptions | None = None) -> TrainResult:
    """Train the network ``cfg`` defines on the ``train`` list of ``data_path`` (see module docstring)."""
    opt = options or TrainOptions()
    ctx = Distributed()
    dev = ctx.device(opt.device, default="auto")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    ctx.start("nccl" if dev.type == "cuda" else "gloo")
    log = opt.log if ctx.main else (lambda s: None)
    try:
        return _train(data_path, cfg, weights, opt, ctx, dev, log)
    finally:
        ctx.close()


def _train(data_path, cfg, weights, opt: TrainOptions, ctx: Distributed, dev: torch.device, log) -> TrainResult:
    data = read_data_config(data_path)
    model = build_model(cfg)
    tc = train_config(model.netdef.net, model.netdef.path)
    specs = model.yolo_specs
    if not specs:
        raise DataError("the cfg has no [yolo] layer to train", os.fspath(cfg))
    for spec in specs:  # inference supports AlexeyAB's head keys; the loss (train/loss.py) does not
        for key, value, neutral in (("scale_x_y", spec.scale_x_y, 1.0), ("new_coords", int(spec.new_coords), 0)):
            if value != neutral:
                raise DataError(f"[yolo] (layer {spec.index}, cfg line {spec.line}): {key}={value:g} is supported "
                                "for inference only; training it is not implemented", model.netdef.path or "<cfg>")
    data.check_classes(model.netdef.classes)
    darknet_init(model, opt.seed)
    header = load_start_weights(model, weights, log) if weights is not None else Header()
    seen = 0 if opt.clear else int(header.seen)
    model.header = replace(header, seen=seen)
    max_batches = opt.max_batches if opt.max_batches is not None else tc.max_batches
    if max_batches <= 0:
        raise DataError("max_batches is 0: set max_batches in [net], or max_batches=N", os.fspath(cfg),
                        option=("max_batches", "N"))
    if tc.batch % (tc.subdivisions * ctx.world):
        raise DataError(f"batch={tc.batch} cannot be split into subdivisions={tc.subdivisions} x {ctx.world} "
                        "processes", os.fspath(cfg))
    minibatch = tc.batch // (tc.subdivisions * ctx.world)
    start = seen // tc.batch

    backup = Path(opt.backup if opt.backup is not None else data.get("backup", "backup"))
    base = basecfg(cfg)
    chart = None
    if opt.map:
        read_image_list(data.require("valid", "the list of images -map measures on"), "valid list")
        if opt.chart is not None or has_matplotlib():
            chart = Path(opt.chart if opt.chart is not None else CHART)
        if ctx.main and chart is None:
            log(f"{CHART} needs matplotlib (pip install 'darknet-py[plot]'): training goes on without the chart")
    lock = None
    if ctx.main:
        backup.mkdir(parents=True, exist_ok=True)
        lock = _claim_backup(backup, base, weights, opt, start, max_batches, chart)
    try:
        return _run(model, data, tc, specs, opt, ctx, dev, log, backup, base, seen, start, max_batches, minibatch,
                    data_path, cfg, chart)
    finally:
        if lock is not None:
            lock.release()


def _backup_names(backup: Path, base: str, opt: TrainOptions, start: int, max_batches: int) -> list[Path]:
    """Every file a run from iteration ``start`` to ``max_batches`` may write in ``backup``."""
    numbered = [done for done in range(start + 1, max_batches + 1)
                if done % 10000 == 0 or (done < 1000 and done % 100 == 0)]
    return ([backup / f"{base}_last.weights", backup / f"{base}_final.weights"]
            + ([backup / f"{base}_best.weights"] if opt.map else [])
            + [backup / f"{base}_{done}.weights" for done in numbered])


def _claim_backup(backup: Path, base: str, weights, opt: TrainOptions, start: int, max_batches: int,
                  chart: Path | None = None) -> OutputLock:
    """Before the first iteration: a lock on the backup names, so a second training writing the same
    names is refused instead of one run's weights silently replacing the other's; and the names
    checked. Resuming from ``NAME_last.weights`` (Darknet's way to go on) continues this training's
    own files, so it may replace them -- the start weights included; any other run replaces an
    earlier run's files only with ``overwrite``. The chart is checked with them: a ``chart.png``
    the user did not name is replaced on the same terms."""
    lock = OutputLock(backup / base, "training's backup names")
    try:
        last = backup / f"{base}_last.weights"
        resuming = weights is not None and last.exists() and os.path.samefile(weights, last)
        if resuming:
            release_input(last)
        plan = OutputPlan(overwrite=opt.overwrite or resuming)
        for path in _backup_names(backup, base, opt, start, max_batches):
            plan.add(path, "a backup of this training", named=False)
        if chart is not None:
            plan.add(chart, "this training's loss and mAP chart", named=opt.chart is not None)
    except BaseException:
        lock.release()
        raise
    return lock


def _run(model: DarknetModel, data, tc: TrainConfig, specs, opt: TrainOptions, ctx: Distributed, dev: torch.device,
         log, backup: Path, base: str, seen: int, start: int, max_batches: int, minibatch: int, data_path=None,
         cfg=None, chart_path: Path | None = None) -> TrainResult:
    last = specs[-1]  # Darknet reads jitter and random from the last layer
    dataset = DetectionDataset(data.require("train", "the list of training images"), model.netdef.classes,
                               AugmentConfig.of(tc, jitter=last.jitter), on_bad=opt.on_bad_label)
    for line in dataset.report.lines():
        log(line)
    net_w, net_h = model.input_size
    sampler = MultiScaleBatchSampler(len(dataset), minibatch, iterations=max_batches, subdivisions=tc.subdivisions,
                                     width=net_w, height=net_h, random=last.random, seed=opt.seed,
                                     start_iteration=start, rank=ctx.rank, world_size=ctx.world,
                                     schedule_end=max(tc.max_batches, max_batches))
    loader = make_loader(dataset, sampler, default_workers() if opt.workers is None else opt.workers)

    model.to(dev).train()
    if dev.type == "cuda":
        model.to_channels_last()
    net = model
    if ctx.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    optimizer = _optimizer(model, tc)
    amp = opt.amp if opt.amp is not None else dev.type == "cuda"
    amp_dtype = torch.bfloat16 if dev.type != "cuda" or torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(dev.type, enabled=amp and amp_dtype == torch.float16)

    log(f"{base}: batch {tc.batch} = {tc.subdivisions} x {minibatch} images"
        + (f" x {ctx.world} processes" if ctx.world > 1 else "") + f", learning rate {tc.learning_rate:g}, "
        f"momentum {tc.momentum:g}, decay {tc.decay:g}; iterations {start}..{max_batches} on {dev}"
        + (f" ({str(amp_dtype).replace('torch.', '')} autocast)" if amp else ""))
    begin = time.perf_counter()
    avg_loss = -1.0
    batches = iter(loader)
    final = backup / f"{base}_final.weights"
    best_path = backup / f"{base}_best.weights"
    best_map = -1.0  # AlexeyAB's: the first mAP is a new best
    map_at = next_map_at(start, len(dataset), tc.batch, tc.burn_in, opt.map_every)
    chart = Chart(chart_path, max_batches, base) if chart_path is not None and ctx.main else None
    for iteration in range(start, max_batches):
        tick = time.perf_counter()
        rate = tc.rate(iteration + 1)  # Darknet counts this update's images in before asking
        for group in optimizer.param_groups:
            group["lr"] = rate
        cost = 0.0
        stats = []
        for sub in range(tc.subdivisions):
            images, truths, counts = next(batches)
            images = images.to(dev, non_blocking=True)
            truths, counts = truths.to(dev, non_blocking=True), counts.to(dev, non_blocking=True)
            h, w = images.shape[-2:]
            sync = nullcontext() if ctx.world == 1 or sub == tc.subdivisions - 1 else net.no_sync()
            with sync:
                with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp):
                    raw = net(images, raw=True)
                res = yolo_loss([r.float() for r in raw], truths, counts, specs, int(w), int(h))
                # Summed over images / the process's share of the batch; DDP's mean over processes
                # then gives the sum over the whole batch / batch, Darknet's lr/batch scaling.
                scaler.scale(res.loss * ctx.world / tc.batch).backward()
            # calc_network_cost: the mean of the cost of the layers that have one (the heads), not their sum
            cost += res.cost / len(specs)
            stats.append(res.heads)
            del images, raw, res  # nothing of this pass outlives it (the next pass's batch is loaded next)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        seen += tc.batch
        done = iteration + 1
        loss = ctx.sum([cost], dev)[0] / tc.batch  # train_network's sum of costs / images
        if not math.isfinite(loss):
            raise RuntimeError(f"iteration {done}: the loss is {loss} (learning rate {rate:g} too high?)")
        avg_loss = loss if avg_loss < 0 else avg_loss * 0.9 + loss * 0.1
        if opt.regions:
            for heads in stats:
                for s in heads:
                    log(f"Region {s.layer} Avg IOU: {s.avg_iou:f}, Class: {s.cls:f}, Obj: {s.obj:f}, "
                        f"No Obj: {s.no_obj:f}, .5R: {s.recall50:f}, .75R: {s.recall75:f},  count: {s.count}")
        log(f"{done}: {loss:f}, {avg_loss:f} avg, {rate:f} rate, {time.perf_counter() - tick:f} seconds, "
            f"{seen} images ({w}x{h})")
        if chart is not None:
            chart.losses.append((done, avg_loss))
        if opt.map and ctx.main and (done >= map_at or done == max_batches):
            value = training_map(data_path, cfg, model, log)
            map_at = next_map_at(done, len(dataset), tc.batch, tc.burn_in, opt.map_every)
            log(f"mean_average_precision (mAP@0.5) = {value:f}")
            if value > best_map:
                best_map = value
                log("New best mAP!")
                _save(model, best_path, seen)
            log((f"next mAP calculation at {map_at} iterations; " if done < max_batches else "")
                + f"last mAP@0.5 = {100 * value:.2f} %, best = {100 * best_map:.2f} %")
            if chart is not None:
                chart.maps.append((done, value))
                chart.draw()
        if ctx.main:
            if done % opt.save_every == 0:
                _save(model, backup / f"{base}_last.weights", seen)
            if done % 10000 == 0 or (done < 1000 and done % 100 == 0):
                _save(model, backup / f"{base}_{done}.weights", seen)
        if opt.time_limit is not None and ctx.sum([time.perf_counter() - begin > opt.time_limit], dev)[0]:
            log(f"time limit of {opt.time_limit:g} s reached after iteration {done}; resume from "
                f"{backup / (base + '_last.weights')} to go on")
            if ctx.main:
                _save(model, backup / f"{base}_last.weights", seen)
            max_batches = done
            break
    _check_in_sync(ctx, model, dev)
    if ctx.main:
        _save(model, final, seen)
        log(f"Saved {final}")
        if chart is not None:
            chart.max_batches = max_batches
            chart.draw()
            log(f"Saved {chart.path}")
    return TrainResult(final, max(0, max_batches - start), seen, time.perf_counter() - begin, avg_loss, ctx.main)


__all__ = ["CHART", "TrainOptions", "TrainResult", "basecfg", "darknet_init", "default_workers",
           "load_start_weights", "train"]
