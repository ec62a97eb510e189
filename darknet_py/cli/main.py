"""``darknet-py``: the parser, built from one small function per command, and the dispatch table."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Callable

from ..limits import disabled
from . import classifier, detect, detector, models, synth
from ..numerics import using
from .args import FLAGS, add_darknet_option, add_limits_option, normalise_argv, set_tf32

# command -> (adds its parser, runs it); the parsers are added in this order
COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "detect": (detect.add_parser, detect.run),
    "detector": (detector.add_parser, detector.run),
    "classifier": (classifier.add_parser, classifier.run),
    "synth": (synth.add_parser, synth.run),
    "validate-cfg": (models.add_validate_parser, models.run_validate),
    "summary": (models.add_summary_parser, models.run_validate),
    "inspect-weights": (models.add_inspect_parser, models.run_inspect),
    "export": (models.add_export_parser, models.run_export),
    "convert": (models.add_convert_parser, models.run_convert),
    "partial": (models.add_partial_parser, models.run_partial),
}

# Commands that read cfgs, weights or checkpoints, and so take --no-limits.
LIMITED = ("detect", "detector", "classifier", "validate-cfg", "summary", "inspect-weights", "export", "convert",
           "partial")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="darknet-py", description="Run Darknet cfg/weights files in PyTorch.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    for name, command in sub.choices.items():  # --debug after the subcommand too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        if name in LIMITED:
            add_limits_option(command)
            add_darknet_option(command)
    return p


def _report_tree(seen: set):
    """The stderr line, once, when ``auto`` turns a network to AlexeyAB's Darknet: its results
    are then comparable with AlexeyAB's build, not pjreddie's (the default, said nowhere)."""
    def report(choice) -> None:
        if choice.tree == "alexeyab" and choice.reason != "asked for" and choice.line() not in seen:
            seen.add(choice.line())
            print(f"darknet-py: {choice.line()} (--darknet pjreddie to change)", file=sys.stderr)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(normalise_argv(sys.argv[1:] if argv is None else argv))
    from ..errors import DarknetPyError

    from ..files import Terminated, input_scope, terminate_as_interrupt

    if hasattr(args, "tf32"):
        set_tf32(args.tf32)
    try:
        # one command, one set of inputs no output may replace; SIGTERM finishes outputs as Ctrl-C does
        with input_scope(), terminate_as_interrupt(), contextlib.ExitStack() as stack:
            if getattr(args, "no_limits", False):
                stack.enter_context(disabled())
            stack.enter_context(using(getattr(args, "darknet", None), report=_report_tree(set())))
            return COMMANDS[args.command][1](args)
    except DarknetPyError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"darknet-py: error: {exc.spelt({**FLAGS, **getattr(args, 'flags', {})})}", file=sys.stderr)
        return 1
    except (RuntimeError, ValueError) as exc:  # from torch, numpy or OpenCV: still one line
        if args.debug:
            traceback.print_exc()
        print(f"darknet-py: error: {exc}", file=sys.stderr)
        return 1
    except Terminated:
        return 143
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `darknet-py detect ... | head`: the reader left; stop quietly like other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


__all__ = ["COMMANDS", "main", "parser"]
