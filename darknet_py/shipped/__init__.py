"""The files darknet-py ships: the project's cfgs and names (``cfg/``), the shapes model
(``weights/yolov3-tiny-shapes.weights``) and its sample photo (``data/shapes.jpg``).

In a checkout they are the top-level ``cfg/``, ``weights/`` and ``data/`` folders, their only copy; a
wheel carries them inside this package (setup.py's build step copies them to ``darknet_py/shipped/``).
``path("cfg/coco.names")`` finds a file in either layout; ``python -m darknet_py.shipped`` prints them
all and the demo command with the installed paths.
"""
from __future__ import annotations

from pathlib import Path

# What is shipped, as glob patterns relative to the checkout (and to this package in a wheel); setup.py
# reads this list to copy the files into the wheel. weights/ may hold other, downloaded weights files.
PATTERNS = ("cfg/*.cfg", "cfg/*.names", "weights/yolov3-tiny-shapes.weights", "data/shapes.jpg", "data/shapes.txt")
# The demo `make demo` runs: the shapes model on its photo, with its class names.
DEMO = ("cfg/yolov3-tiny-shapes.cfg", "weights/yolov3-tiny-shapes.weights", "data/shapes.jpg", "cfg/shapes.names")

_PACKAGE = Path(__file__).resolve().parent


def root() -> Path:
    """The folder holding cfg/, weights/ and data/: this package in an installed wheel, else the
    checkout (an editable install or a run from the source tree)."""
    if (_PACKAGE / "cfg").is_dir():
        return _PACKAGE
    return _PACKAGE.parents[1]


def matching(base: Path) -> list[Path]:
    """The files under ``base`` that PATTERNS name, sorted."""
    return sorted({p for pattern in PATTERNS for p in base.glob(pattern) if p.is_file()})


def path(relative: str) -> Path:
    """A shipped file by its checkout-relative name, e.g. ``cfg/coco.names`` (it may not exist:
    callers check, as for any path a user gives)."""
    return root() / relative


def files() -> list[Path]:
    """Every shipped file, sorted."""
    return matching(root())


def demo_command() -> str:
    """The `make demo` command line with this installation's paths."""
    cfg, weights, photo, names = (str(path(p)) for p in DEMO)
    return f"darknet-py detect {cfg} {weights} {photo} --names {names}"


__all__ = ["DEMO", "PATTERNS", "demo_command", "files", "matching", "path", "root"]
