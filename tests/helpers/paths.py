"""The single home of the suite's paths: the checkout (ROOT), the Darknet reference folder (REF) and
reference files that skip a test cleanly when absent."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The Darknet reference folder beside the checkout; DARKNET_PY_REFERENCE points elsewhere (a path that
# does not exist runs the suite as a fresh clone without it does).
REF = Path(os.environ.get("DARKNET_PY_REFERENCE", ROOT.parent / "shared" / "darknet-reference"))


def ref_path(*parts: str) -> Path:
    """A file of the reference folder; the calling test is skipped when it is not there."""
    p = REF.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"Darknet reference file {p} not present")
    return p


def sized_cfg_text(path: Path, size: int) -> str:
    """The cfg text with [net] width/height set to `size` (reference cfgs carry 608 training headers)."""
    text = path.read_text()
    text = re.sub(r"(?m)^width\s*=\s*\d+", f"width={size}", text, count=1)
    return re.sub(r"(?m)^height\s*=\s*\d+", f"height={size}", text, count=1)
