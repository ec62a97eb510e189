"""`detector train --map` (AlexeyAB's -map): the mAP lines, <cfg>_best.weights equal to what `detector map`
measures on it, the chart planned before work; the multi-scale size of runs stopped early; the default
number of loader workers."""
from __future__ import annotations

import os
import re
import warnings

import pytest

from darknet_py.cli import main
from darknet_py.train.data import MultiScaleBatchSampler
from darknet_py.train.progress import has_matplotlib, next_map_at
from darknet_py.train.trainer import TrainOptions, default_workers, train
from darknet_py.validate import detector_map
from tests.helpers.train import log_lines, make_overfit_set, write_train_cfg

MAP_LINE = re.compile(r"^mean_average_precision \(mAP@0\.5\) = (\d+\.\d{6})$")


@pytest.fixture(scope="module")
def shapes4(tmp_path_factory):
    return make_overfit_set(tmp_path_factory.mktemp("mapdata"))


def test_map_schedule_is_alexeyabs():
    # every 4 epochs, at least 100 iterations, the first after 400 and after the burn-in
    assert next_map_at(0, 3000, 64, 1000, None) == 1000
    assert next_map_at(0, 3000, 64, 200, None) == 400
    assert next_map_at(1000, 3000, 64, 1000, None) == 1187   # 4 * 3000 // 64
    assert next_map_at(1000, 100, 64, 1000, None) == 1100    # at least 100
    assert next_map_at(7, 3000, 64, 1000, 5) == 12           # --map-every


def test_train_map_best_weights_equal_detector_map(shapes4, tmp_path, monkeypatch, capsys):
    ds, data = shapes4
    cfg = write_train_cfg(tmp_path, max_batches=3)
    monkeypatch.chdir(tmp_path)
    args = ["detector", "train", str(data), str(cfg), "--device", "cpu", "--workers", "0", "--backup", "b",
            "--quiet", "--max-batches", "3"]
    assert main(args + ["-map", "--map-every", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    values = [float(m.group(1)) for m in map(MAP_LINE.match, out) if m]
    assert len(values) == 3                        # after each of the 3 iterations (the last one included)
    assert "New best mAP!" in out
    best = tmp_path / "b" / "tiny-train_best.weights"
    assert best.exists() and len(log_lines(out)) == 3
    # the best is kept where the mAP first reached its highest value
    assert abs(detector_map(data, cfg, best).report.map - max(values)) <= 5e-7
    capsys.readouterr()
    assert main(["detector", "map", str(data), str(cfg), str(best)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"mAP@0\.5 \(all-point, VOC2010\+\) = " + re.escape(f"{100 * max(values):.1f}") + " %",
                     printed)
    chart = tmp_path / "chart.png"
    if has_matplotlib():
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # an existing chart.png the user did not name is refused before any work, as the backups are
        before = best.stat().st_mtime_ns
        assert main(args + ["--backup", "c", "--map"]) == 1
        assert "chart.png exists" in capsys.readouterr().err
        assert not (tmp_path / "c" / "tiny-train_final.weights").exists()
        assert best.stat().st_mtime_ns == before
        # named, it is the user's to replace
        assert main(args + ["--backup", "d", "--map", "--chart", "chart.png", "--max-batches", "1"]) == 0
    else:
        assert not chart.exists()
        assert "needs matplotlib" in capsys.readouterr().out


def test_map_needs_the_valid_list_before_work(shapes4, tmp_path):
    ds, data = shapes4
    nodata = tmp_path / "novalid.data"
    nodata.write_text("".join(ln + "\n" for ln in data.read_text().splitlines() if not ln.startswith("valid"))
                      .replace("train = ", f"train = {data.parent}/").replace("names = ", f"names = {data.parent}/"))
    cfg = write_train_cfg(tmp_path, max_batches=2)
    with pytest.raises(Exception, match="no .valid. key"):
        train(nodata, cfg, options=TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "b"), map=True,
                                                log=lambda s: None))
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_map_options_only_for_train(shapes4, tmp_path, capsys):
    ds, data = shapes4
    cfg = write_train_cfg(tmp_path)
    assert main(["detector", "map", str(data), str(cfg), "w.weights", "--map-every", "3"]) == 1
    assert "detector train's options" in capsys.readouterr().err
    assert main(["detector", "train", str(data), str(cfg), "--map-every", "3"]) == 1
    assert "go with --map" in capsys.readouterr().err
    assert main(["detector", "train", str(data), str(cfg), "--map", "--map-every", "0"]) == 1
    assert "--map-every" in capsys.readouterr().err


def test_short_run_is_not_stuck_at_the_largest_size():
    """Darknet's last 200 at the largest size count back from the cfg's max_batches: a run stopped
    after 30 of 8000 iterations trains at Darknet's random sizes (one per 10 iterations)."""
    kw = dict(width=320, height=320, random=True, seed=0)
    stopped = MultiScaleBatchSampler(10, 2, 30, schedule_end=8000, **kw)
    full = MultiScaleBatchSampler(10, 2, 8000, **kw)
    assert [stopped.size_at(i) for i in range(30)] == [full.size_at(i) for i in range(30)]
    largest = full.sizes[-1]
    assert {full.size_at(i) for i in range(0, 7800, 10)} > {largest}
    assert all(full.size_at(i) == largest for i in range(7800, 8000))
    # a run whose own end is the schedule's end: the last 200, as before
    assert {MultiScaleBatchSampler(10, 2, 30, **kw).size_at(i) for i in range(30)} == {largest}
    with pytest.raises(Exception, match="schedule_end"):
        MultiScaleBatchSampler(10, 2, 30, schedule_end=20, **kw)


def test_trainer_passes_the_cfg_schedule_end(shapes4, tmp_path):
    ds, data = shapes4
    cfg = write_train_cfg(tmp_path, max_batches=8000)
    text = cfg.read_text().replace("random=0", "random=1")
    cfg.write_text(text)
    log: list[str] = []
    train(data, cfg, options=TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "b"), regions=False,
                                          log=log.append, max_batches=1, seed=1))
    size = log_lines(log)[0].rsplit("(", 1)[1].rstrip(")")
    sampler = MultiScaleBatchSampler(4, 4, 8000, width=96, height=96, random=True, seed=1)
    assert size == "{}x{}".format(*sampler.size_at(0))


def test_default_workers_fit_the_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert default_workers() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert default_workers() == 4


def test_default_workers_print_no_dataloader_warning(shapes4, tmp_path, monkeypatch, capsys):
    """PyTorch warns when the workers exceed the CPUs available; the default never does."""
    ds, data = shapes4
    cfg = write_train_cfg(tmp_path, max_batches=1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["detector", "train", str(data), str(cfg), "--device", "cpu", "--backup", str(tmp_path / "b"),
                     "--quiet"]) == 0
    captured = capsys.readouterr()
    messages = [str(w.message) for w in caught] + [captured.err, captured.out]
    assert not any("worker processes in total" in m for m in messages), messages
