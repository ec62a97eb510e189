"""darknet_py.train.schedule: the [net] section's training keys (and their errors) and Darknet's learning
rate policies, values written out by hand."""
from __future__ import annotations

import math

import pytest

from darknet_py.errors import CfgError
from darknet_py.graph import parse_network
from darknet_py.train.schedule import TrainConfig, train_config
from tests.helpers.train import train_cfg_text


def test_yolov3_schedule_values():
    # yolov3.cfg: learning_rate=0.001 burn_in=1000 policy=steps steps=400000,450000 scales=.1,.1
    c = TrainConfig(learning_rate=0.001, burn_in=1000, power=4, policy="steps", steps=[400000, 450000],
                    scales=[0.1, 0.1], max_batches=500200)
    assert c.rate(0) == 0 and c.rate(500) == pytest.approx(0.001 * 0.5 ** 4, rel=1e-12)
    assert c.rate(1000) == 0.001 and c.rate(399999) == 0.001
    assert c.rate(400000) == pytest.approx(1e-4) and c.rate(449999) == pytest.approx(1e-4)  # steps[i] > n
    assert c.rate(450000) == pytest.approx(1e-5)


@pytest.mark.parametrize("policy, extra, n, expected", [
    ("constant", {}, 77, 0.01),
    ("step", {"step": 10, "scale": 0.5}, 35, 0.01 * 0.5 ** 3),
    ("exp", {"gamma": 0.99}, 20, 0.01 * 0.99 ** 20),
    ("poly", {"power": 2, "max_batches": 100}, 25, 0.01 * 0.75 ** 2),
    ("sigmoid", {"gamma": 0.1, "step": 50}, 60, 0.01 / (1 + math.exp(0.1 * 10))),
    ("sgdr", {"sgdr_cycle": 10, "sgdr_mult": 2, "learning_rate_min": 0.0}, 15,
     0.01 * 0.5 * (1 + math.cos(5 * math.pi / 20))),  # second cycle: 10..30, 5 into it
])
def test_policies(policy, extra, n, expected):
    assert TrainConfig(learning_rate=0.01, policy=policy, **extra).rate(n) == pytest.approx(expected, rel=1e-12)


def test_train_config_from_cfg_and_errors(tmp_path):
    net = parse_network(train_cfg_text(batch=8, subdivisions=2, policy="steps", steps="5,9",
                                                        scales=".1,.5").encode()).net
    c = train_config(net)
    assert (c.batch, c.subdivisions, c.minibatch, c.steps, c.scales) == (8, 2, 4, [5, 9], [0.1, 0.5])
    for keys, pattern in [({"steps": "5,9", "scales": ".1"}, "steps and scales of equal length"),
                          ({"batch": 6, "subdivisions": 4}, "positive multiple of subdivisions"),
                          ({"policy": "cosine"}, "policy=cosine: expected one of"),
                          ({"adam": 1}, "adam=1: Darknet's Adam update is not supported"),
                          ({"mosaic": 1}, "mosaic=1"),
                          ({"learning_rate": "fast"}, "learning_rate=fast: expected a number")]:
        with pytest.raises(CfgError, match=pattern):
            train_config(parse_network(train_cfg_text(**keys).encode()).net)
