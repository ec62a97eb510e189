"""The single home of the environment of the processes the tests start (`python -m darknet_py`,
torchrun, the tools): this checkout's package first on PYTHONPATH, so that a child imports the code
under test and not an installed copy."""
from __future__ import annotations

import os

from tests.helpers.paths import ROOT


def child_env(**extra: str) -> dict:
    """os.environ with ROOT prepended to PYTHONPATH, and ``extra`` (e.g. OMP_NUM_THREADS="1") set."""
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}
