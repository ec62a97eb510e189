"""The commands on cfg and weights files: ``validate-cfg``, ``summary``, ``inspect-weights``,
``partial``, ``export`` and ``convert``."""
from __future__ import annotations

import dataclasses
import os
import sys
import warnings

from ..errors import ExportError, UsageError, escape_controls
from .args import add_force_header_option, add_overwrite_option, add_size_option, size_of


def _plan(inputs, outputs) -> None:
    """Before any work: the outputs ((path, what, named) each) checked against the command's inputs
    and each other (darknet_py.files.OutputPlan); ``named=False`` for a name derived by us."""
    from ..files import OutputPlan, note_inputs

    note_inputs([p for p in inputs if p])
    plan = OutputPlan(overwrite=False)
    for path, what, named in outputs:
        plan.add(path, what, named=named)


def add_validate_parser(sub) -> None:
    p = sub.add_parser("validate-cfg", help="parse and shape-check a cfg; print the layer table")
    p.add_argument("cfg")
    p.add_argument("-v", "--verbose", action="store_true", help="also list the training-only keys kept")
    add_size_option(p, "input size")


def add_summary_parser(sub) -> None:
    p = sub.add_parser("summary", help="Darknet's layer table with BFLOPs, and the weights-file size the cfg implies")
    p.add_argument("cfg")
    add_size_option(p, "input size")


def run_validate(args) -> int:
    """validate-cfg and summary: the layer table (validate-cfg: with cfg lines), after every check."""
    from ..graph import parse_network
    from ..summary import summarize

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        width, height = size_of(args)
        netdef = parse_network(args.cfg, width=width, height=height)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    table = summarize(netdef)
    for line in table.lines(cfg_lines=args.command == "validate-cfg")[:-1]:
        print(line)
    kinds = sorted({netdef.sections[i + 1].kind for i in netdef.head_indices}) or ["yolo"]
    heads = f"{len(netdef.head_indices)} {'/'.join(f'[{k}]' for k in kinds)} heads"
    print(f"{len(netdef.specs)} layers, {heads}, {table.floats} weight floats "
          f"({table.weights_bytes()} bytes in a .weights file)")
    if getattr(args, "verbose", False):
        print(f"[net] line {netdef.net.line}: training keys kept: "
              + (", ".join(f"{k}={v}" for k, v in netdef.net.training.items()) or "none"))
        for section, kind in zip(netdef.sections[1:], netdef.kinds):
            kept = [f"{k}={section.options[k].value}" for k in kind.training_keys if k in section.options]
            if kept:
                print(f"[{section.kind}] line {section.line} (layer {section.index}): training keys kept: "
                      + ", ".join(kept))
        seen = {}
        for spec in netdef.yolo_specs:
            for m in spec.mask:
                if m in seen:
                    print(f"note: anchor {m} is used by the [yolo] layers {seen[m]} and {spec.index}")
                seen[m] = spec.index
    return 0


def add_inspect_parser(sub) -> None:
    p = sub.add_parser("inspect-weights", help="per-layer statistics of a weights file for a cfg")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("--partial", type=int, help="load only the first N layers")
    p.add_argument("--seen-bytes", type=int, choices=(4, 8))
    add_force_header_option(p)


def _check_layers(cfg, upto: int | None) -> None:
    """partial's N / inspect-weights' --partial: 1 to the cfg's number of layers, before the weights load."""
    from ..checks import check_count
    from ..graph import parse_network

    if upto is not None:
        check_count("upto", upto, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the cfg's own warnings come with the load
            layers = len(parse_network(cfg).specs)
        check_count("upto", upto, 1, layers, what="the number of layers")


def run_inspect(args) -> int:
    from ..detector import load
    from ..weights import weights_report

    _check_layers(args.cfg, args.partial)
    model = load(args.cfg, args.weights, upto=args.partial, seen_bytes=args.seen_bytes, force_header=args.force_header)
    h = model.header
    print(f"header: major={h.major} minor={h.minor} revision={h.revision} seen={h.seen} ({h.seen_bytes}-byte seen)")
    for row in weights_report(model, args.partial):  # with --partial, only the layers read from the file
        stats = "  ".join(f"{k}: mean {v['mean']:+.4g} std {v['std']:.4g}" for k, v in row.items()
                          if isinstance(v, dict))
        print(f"{row['layer']:>4} [{row['kind']}] line {row['line']}: {row['floats']} floats  {stats}")
    if args.partial is not None and args.partial < len(model.layers):
        print(f"layers {args.partial}..{len(model.layers) - 1}: not read (--partial {args.partial})")
    return 0


def add_partial_parser(sub) -> None:
    p = sub.add_parser("partial", help="Darknet's partial: save the first N layers' weights (a backbone)")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("out")
    p.add_argument("n", type=int, metavar="N", help="how many layers, 1 to the number of layers")
    add_force_header_option(p)
    p.set_defaults(flags={"upto": "N={}"})


def run_partial(args) -> int:
    from ..detector import load

    _check_layers(args.cfg, args.n)
    _plan((args.cfg, args.weights), [(args.out, "the partial weights", True)])
    model = load(args.cfg, args.weights, force_header=args.force_header)
    # Darknet's partial loads with clear=1: the backbone starts a new training at seen = 0
    model.header = dataclasses.replace(model.header, seen=0)
    model.save_weights(args.out, upto=args.n)
    print(f"saved layers 0..{args.n - 1} of {args.cfg} to {args.out} (seen reset to 0, as Darknet's partial)")
    return 0


# What `export` writes for each --format, and the suffix of its default file name.
EXPORT_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt": ".pt"}


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="write the model as ONNX, TorchScript or a PyTorch checkpoint, verified")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("--format", choices=tuple(EXPORT_SUFFIXES), default="onnx")
    add_size_option(p, "input size")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--batch", type=int, default=1, help="fixed batch size (default 1)")
    group.add_argument("--dynamic", action="store_true", help="dynamic batch dimension (ONNX)")
    p.add_argument("--decode", action="store_true",
                   help="one output: x1, y1, x2, y2 (network pixels), objectness, class scores per prediction")
    p.add_argument("--half", action="store_true", help="float16 model and input")
    p.add_argument("--opset", type=int, help="ONNX opset")
    p.add_argument("--image", help="photo to measure the export's difference against PyTorch on")
    p.add_argument("-o", "--output", help="output file (default: the weights' name with .onnx/.torchscript.pt/.pt)")
    add_force_header_option(p)
    add_overwrite_option(p, "the default output name (-o names a file that is replaced)")


def run_export(args) -> int:
    from .. import export as ex
    from ..detector import load
    from ..imageio import load_image

    ex.check_export_options(batch=args.batch, opset=args.opset)  # before the model loads
    width, height = size_of(args)
    out = args.output or os.path.splitext(args.weights)[0] + EXPORT_SUFFIXES[args.format]
    # a default name made from the weights' is replaced only with --overwrite; never the inputs
    # (`export OTHER.cfg m.pt --format pt` would otherwise rewrite m.pt)
    _plan((args.cfg, args.weights, args.image),
          [(out, f"the {args.format} export", args.output is not None or args.overwrite)])
    model = load(args.cfg, args.weights, width=width, height=height, channels_last=False,
                 force_header=args.force_header)
    sample = load_image(args.image)[0] if args.image else None
    try:
        report = _export(ex, args, model, out, sample)
    except ExportError as exc:
        if args.image:  # the library knows the photo only as pixels
            raise ExportError(str(exc).replace("on the sample image", f"on {args.image}")) from exc
        raise
    report.sample_name = args.image or "the synthetic sample image"
    for line in report.lines():
        print(escape_controls(line))
    return 0


def _export(ex, args, model, out: str, sample):
    if args.format == "pt":
        report = ex.export_checkpoint(model, out, sample=sample)
    elif args.format == "onnx":
        opset = {} if args.opset is None else {"opset": args.opset}
        report = ex.export_onnx(model, out, batch=args.batch, dynamic=args.dynamic, decode=args.decode,
                                half=args.half, sample=sample, **opset)
    else:
        if args.dynamic:
            raise UsageError("--dynamic applies to ONNX; a traced TorchScript module takes any batch already")
        report = ex.export_torchscript(model, out, batch=args.batch, decode=args.decode, half=args.half,
                                       sample=sample)
    return report


def add_convert_parser(sub) -> None:
    p = sub.add_parser("convert", help="a darknet-py checkpoint (.pt) back to Darknet .weights")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--cfg", help="cfg to use instead of the one stored in the checkpoint")


def run_convert(args) -> int:
    from ..checkpoint import load_checkpoint

    _plan((args.checkpoint, args.cfg), [(args.out, "the converted weights", True)])
    model = load_checkpoint(args.checkpoint, cfg=args.cfg)
    model.save_weights(args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    return 0


__all__ = ["EXPORT_SUFFIXES", "add_convert_parser", "add_export_parser", "add_inspect_parser", "add_partial_parser",
           "add_summary_parser", "add_validate_parser", "run_convert", "run_export", "run_inspect", "run_partial",
           "run_validate"]
