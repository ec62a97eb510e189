"""The single home of the hypothesis strategies several test files draw from."""
from __future__ import annotations

import torch
from hypothesis import strategies as st

# Few distinct values, so that identical boxes and tied scores occur often.
COORDS = st.sampled_from([0.1, 0.2, 0.25, 0.3, 0.5, 0.55, 0.7])
SIZES = st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.6])
PROBS = st.sampled_from([0.0, 0.0, 0.3, 0.6, 0.61, 0.9])


def draw_candidates(draw, n: int, classes: int, dtype: torch.dtype):
    """n NMS candidates drawn with ``draw`` (inside an st.composite): (n, 4) boxes (cx, cy, w, h) and
    (n, classes) probs, from the few values above."""
    boxes = [[draw(COORDS), draw(COORDS), draw(SIZES), draw(SIZES)] for _ in range(n)]
    probs = [[draw(PROBS) for _ in range(classes)] for _ in range(n)]
    return (torch.tensor(boxes, dtype=dtype).reshape(n, 4), torch.tensor(probs, dtype=dtype).reshape(n, classes))
