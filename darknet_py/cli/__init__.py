"""``darknet-py``: the command line. The only package that prints and chooses exit codes.

One module per group of commands, each with one small parser function per command and the
function that runs it; :mod:`.main` holds the dispatch table. Darknet's own spellings work too:
single-dash options (``-thresh 0.25``) and ``darknet-py detector test DATA CFG WEIGHTS [IMG]``.
A new command is a parser function and a run function here, and a row in ``main.COMMANDS``.
"""
from .main import COMMANDS, main, parser

__all__ = ["COMMANDS", "main", "parser"]
