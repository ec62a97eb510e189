"""The commands on cfg and weights files: ``validate-cfg``, ``summary``, ``inspect-weights``,
``partial`` and ``convert`` (``export``: darknet_py.cli.export)."""
from __future__ import annotations

import dataclasses
import os
import sys
import warnings

from .args import add_force_header_option, add_size_option, size_of


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


__all__ = ["add_convert_parser", "add_inspect_parser", "add_partial_parser", "add_summary_parser",
           "add_validate_parser", "run_convert", "run_inspect", "run_partial", "run_validate"]
