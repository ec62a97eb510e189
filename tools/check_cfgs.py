#!/usr/bin/env python3
"""Which Darknet cfg files darknet-py loads (and runs): the survey behind the README's matrix.

    python tools/check_cfgs.py FOLDER... [--run SIZE] [--json out.json]

Every ``*.cfg`` under the folders is parsed (identical contents once); files without a ``[net]``
section are listed as not networks. With ``--run SIZE`` each network that parses is also built at
SIZE x SIZE (its own size where SIZE does not fit it, e.g. a [connected] layer fixed to one input
size), given calibrated random weights, and run once on a random image. Relative ``tree=`` files
are looked up as Darknet does, from the working directory: run it from the repository root of the
cfgs (e.g. a clone of AlexeyAB/darknet) for YOLO9000.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from darknet_py.files import write_text  # noqa: E402
from darknet_py.errors import DarknetPyError  # noqa: E402
from darknet_py.graph import build_model, parse_network  # noqa: E402


def _run(path: Path, size: int) -> str:
    import torch

    from darknet_py.random_weights import randomize

    for w in (size, None):
        try:
            model = build_model(path, width=w, height=w) if w else build_model(path)
            break
        except DarknetPyError:
            if w is None:
                raise
    c, h, wd = model.netdef.input_shape
    if c * h * wd * 4 > 64e6 or sum(p.numel() for p in model.parameters()) > 3e8:
        return f"not run (input {wd}x{h} or weights too large for a quick run)"
    x = torch.rand(1, c, h, wd, generator=torch.Generator().manual_seed(0))
    randomize(model, x)
    with torch.no_grad():
        outs = model(x)
    bad = [i for i, o in zip(model.heads, outs) if not torch.isfinite(o).all()]
    if bad:
        raise RuntimeError(f"non-finite output at layer {bad[0]}")
    return f"ran at {wd}x{h}: " + ", ".join(f"{list(o.shape[1:])}" for o in outs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--run", type=int, metavar="SIZE", help="also build at SIZE and run once")
    ap.add_argument("--json", type=Path, help="write the results as JSON")
    args = ap.parse_args(argv)
    seen = {}
    results = collections.OrderedDict()
    for folder in args.folders:
        for path in sorted(folder.rglob("*.cfg")):
            digest = hashlib.sha1(path.read_bytes()).hexdigest()
            if digest in seen:
                continue
            seen[digest] = path
            text = path.read_bytes()
            if b"[net]" not in text and b"[network]" not in text:
                results[str(path)] = ("not a network", "")
                continue
            start = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    nd = parse_network(path)
                    detail = f"{len(nd.specs)} layers"
                    status = "loads"
                    if args.run:
                        detail += "; " + _run(path, args.run)
                        status = "runs" if "ran at" in detail else "loads"
            except DarknetPyError as exc:
                status, detail = "refused", str(exc)
            except Exception as exc:  # a crash is a bug: show it, keep surveying
                status, detail = "CRASH", f"{type(exc).__name__}: {exc}"
            results[str(path)] = (status, f"{detail} ({time.perf_counter() - start:.1f} s)")
            print(f"{status:8} {path}: {results[str(path)][1][:160]}", flush=True)
    counts = collections.Counter(v[0] for v in results.values())
    print("\n" + ", ".join(f"{n} {k}" for k, n in counts.most_common()))
    if args.json:
        write_text(args.json, json.dumps(results, indent=1))  # atomic, never over a device or folder
    return 1 if counts.get("CRASH") else 0


if __name__ == "__main__":
    sys.exit(main())
