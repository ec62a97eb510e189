"""``darknet-py``: the parser, built from one small function per command, and the dispatch table."""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Callable

from ..errors import escape_controls
from ..limits import disabled
from . import classifier, detect, detector, export, models, synth
from ..numerics import using
from .args import BACKBONE_UPTO, FLAGS, add_darknet_option, add_limits_option, normalise_argv, set_tf32

# command -> (adds its parser, runs it); the parsers are added in this order
COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "detect": (detect.add_parser, detect.run),
    "detector": (detector.add_parser, detector.run),
    "classifier": (classifier.add_parser, classifier.run),
    "synth": (synth.add_parser, synth.run),
    "validate-cfg": (models.add_validate_parser, models.run_validate),
    "summary": (models.add_summary_parser, models.run_validate),
    "inspect-weights": (models.add_inspect_parser, models.run_inspect),
    "export": (export.add_parser, export.run),
    "convert": (models.add_convert_parser, models.run_convert),
    "partial": (models.add_partial_parser, models.run_partial),
}

# Commands that read cfgs, weights or checkpoints, and so take --no-limits.
LIMITED = ("detect", "detector", "classifier", "validate-cfg", "summary", "inspect-weights", "export", "convert",
           "partial")


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser, and each command's own parser by name."""
    from .. import __version__

    p = argparse.ArgumentParser(prog="darknet-py", description="Run Darknet cfg/weights files in PyTorch.",
                                epilog="options may come before, between or after a command's inputs, as "
                                       "Darknet's do; a path that begins with '-' goes after '--'")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"darknet-py {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    for name, command in sub.choices.items():  # --debug after the subcommand too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        if name in LIMITED:
            add_limits_option(command)
            add_darknet_option(command)
    return p, dict(sub.choices)


def parser() -> argparse.ArgumentParser:
    return _build()[0]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line, Darknet's single-dash spellings included, with each command's options
    anywhere among its inputs (``detect CFG WEIGHTS -thresh .25 dog.jpg``, as Darknet takes them).

    argparse's intermixed parsing does not work through subparsers, so the command is picked out
    first (after any top-level ``--debug``) and the rest goes to that command's parser; ``--help``,
    ``--version``, a missing or unknown command go to the top-level parser and its own messages.
    """
    argv = normalise_argv(argv)
    top, commands = _build()
    i = 0
    while i < len(argv) and argv[i] == "--debug":
        i += 1
    if i == len(argv) or argv[i] not in commands:
        return top.parse_args(argv)
    args = commands[argv[i]].parse_intermixed_args(argv[i + 1:])
    args.command = argv[i]
    args.debug = i > 0 or getattr(args, "debug", False)
    return args


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A library warning on the command line: one line on stderr, like the errors (not Python's
    source file and line, which mean nothing to someone running the command)."""
    print(f"darknet-py: warning: {message}", file=sys.stderr if file is None else file)


def _report_tree(seen: set):
    """The stderr line, once, when ``auto`` turns a network to AlexeyAB's Darknet: its results
    are then comparable with AlexeyAB's build, not pjreddie's (the default, said nowhere)."""
    def report(choice) -> None:
        if choice.tree == "alexeyab" and choice.reason != "asked for" and choice.line() not in seen:
            seen.add(choice.line())
            print(f"darknet-py: {choice.line()} (--darknet pjreddie to change)", file=sys.stderr)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from ..errors import DarknetPyError

    from ..files import Terminated, input_scope, terminate_as_interrupt

    if hasattr(args, "tf32"):
        set_tf32(args.tf32)
    try:
        # one command, one set of inputs no output may replace; SIGTERM finishes outputs as Ctrl-C does
        with input_scope(), terminate_as_interrupt(), contextlib.ExitStack() as stack, warnings.catch_warnings():
            warnings.showwarning = _show_warning
            if getattr(args, "no_limits", False):
                stack.enter_context(disabled())
            stack.enter_context(using(getattr(args, "darknet", None), report=_report_tree(set())))
            return COMMANDS[args.command][1](args)
    except DarknetPyError as exc:
        if args.debug:
            traceback.print_exc()
        flags = {**FLAGS, **({} if hasattr(args, "partial") else {"upto": BACKBONE_UPTO}), **getattr(args, "flags", {})}
        text = exc.spelt(flags)
        if hasattr(args, "seen_bytes"):  # the weights' size hint, besides the error's own option
            text = re.sub(r"\bseen_bytes=([48])\b", r"--seen-bytes \1", text)
        print(f"darknet-py: error: {escape_controls(text)}", file=sys.stderr)
        return 1
    except (RuntimeError, ValueError) as exc:  # from torch, numpy or OpenCV: still one line
        if args.debug:
            traceback.print_exc()
        print(f"darknet-py: error: {escape_controls(str(exc))}", file=sys.stderr)
        return 1
    except Terminated:
        return 143
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `darknet-py detect ... | head`: the reader left; stop quietly like other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


__all__ = ["COMMANDS", "main", "parse_args", "parser"]
