"""AlexeyAB's ``detector train -map``: mAP@0.5 on the ``valid`` list during training, the best
weights kept, and the loss/mAP chart.

When (``train_detector``): with ``every`` unset, the next calculation is at
``max(last + max(4 * train_images / batch, 100), burn_in, 400)`` iterations, ``last`` being the
iteration of the previous one (at first the start iteration), and always after the last
iteration; ``every=N`` makes it ``last + N``. The number is ``darknet_py.validate.detector_map``'s,
the code of ``detector map``, on the training network itself in eval mode without gradients, so
``detector map`` on ``<cfg>_best.weights`` gives the same value.

The chart is loss (Darknet's running average) and mAP against iterations, as AlexeyAB's
``chart.png``. It needs matplotlib (the ``plot`` extra); without it training says so once and goes
on without a chart (the mAP lines and the best weights do not need it).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..files import write_bytes

MAP_EVERY_MIN = 100   # calc_map_for_each is at least 100 iterations...
MAP_FIRST_MIN = 400   # ...and the first calculation is after at least 400 (and after the burn-in)
MAP_EPOCHS = 4        # ...otherwise every 4 epochs


def has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def next_map_at(last: int, train_images: int, batch: int, burn_in: int, every: int | None) -> int:
    """The iteration of the next mAP calculation after one at ``last`` (see the module docstring)."""
    if every is not None:
        return last + every
    interval = max(MAP_EPOCHS * train_images // batch, MAP_EVERY_MIN)
    return max(last + interval, burn_in, MAP_FIRST_MIN)


def training_map(data_path, cfg, model, log: Callable[[str], None]) -> float:
    """``detector map``'s mAP@0.5 of ``model`` as it is now (eval mode, no gradients, back to train mode)."""
    from ..validate import detector_map

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            report = detector_map(data_path, cfg, None, model=model).report
    finally:
        model.train(was_training)
    for line in report.lines():
        log(line)
    return float(report.map)


@dataclass
class Chart:
    """The points of AlexeyAB's training chart, drawn into ``path``."""

    path: Path
    max_batches: int
    title: str
    losses: list[tuple[int, float]] = field(default_factory=list)
    maps: list[tuple[int, float]] = field(default_factory=list)

    def draw(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 8), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        if self.losses:
            x, y = zip(*self.losses)
            ax.plot(x, y, color="tab:blue", lw=1.2, label="avg loss")
            finite = [v for v in y if math.isfinite(v)]
            top = sorted(finite)[int(0.95 * (len(finite) - 1))] if finite else 1.0
            ax.set_ylim(0, max(top * 1.2, 1e-6))
        ax.set(xlim=(0, self.max_batches), xlabel="iteration", ylabel="avg loss",
               title=self.title + (f"  (last mAP@0.5 {100 * self.maps[-1][1]:.2f} %, best "
                                   f"{100 * max(m for _, m in self.maps):.2f} %)" if self.maps else ""))
        ax.grid(alpha=0.3)
        ax2 = ax.twinx()
        if self.maps:
            x, y = zip(*self.maps)
            ax2.plot(x, [100 * v for v in y], "o-", color="tab:red", lw=1.2, label="mAP@0.5 %")
        ax2.set(ylim=(0, 100), ylabel="mAP@0.5 %")
        handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        if handles:
            ax.legend(handles=handles, loc="upper right")
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        write_bytes(self.path, buf.getvalue())


__all__ = ["Chart", "has_matplotlib", "next_map_at", "training_map"]
