"""Budgets checked before work (darknet_py.limits): a cfg whose weights or activations exceed the
budget is refused from its specs alone, naming the layer and line, unless ``limits=False`` /
``--no-limits``; ``validate-cfg`` and ``summary`` build no layer, so a table of such a cfg prints in
a few MB; every real Darknet cfg is admitted, and each kind's weight rule equals what its built
layer writes to a .weights file."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from darknet_py import limits
from darknet_py.cli.main import main
from darknet_py.errors import CfgError
from darknet_py.graph import build_model, parse_network
from darknet_py.weights import count_floats
from tests.helpers.cfgs import cfg, conv, locate
from tests.helpers.paths import ROOT
from tests.helpers.processes import child_env
from tests.layers.test_every_kind import MINIMAL

REFERENCE = Path("/work/shared/darknet-reference")
HUGE = cfg(conv(8), conv(20000000), width=64)  # 20 M filters x 8 x 3 x 3 floats: 5.4 GiB of weights


def reference_cfgs() -> list[Path]:
    return sorted(REFERENCE.rglob("*.cfg")) + sorted((ROOT / "tests" / "fixtures" / "cfg").rglob("*.cfg"))


def test_filters_20m_refused_naming_layer_line_estimate_and_budget():
    with pytest.raises(CfgError) as e:
        parse_network(HUGE.encode())
    err = e.value
    assert err.index == 1 and err.line == locate(HUGE, "convolutional", 2, "filters")
    # independent estimate: biases + 3 BN vectors + kernels, float32, for both layers
    total = 4 * (8 * 4 + 8 * 3 * 9 + 20000000 * 4 + 20000000 * 8 * 9)
    assert f"{total / 2**30:.1f} GiB" in str(err) and "4.0 GiB" in str(err), str(err)
    assert err.option == ("limits", "False") and "limits=False" in str(err)


def test_override_keyword_and_context():
    assert parse_network(HUGE.encode(), limits=False).weight_floats == 8 * 4 + 8 * 27 + 20000000 * 76
    with limits.disabled():
        parse_network(HUGE.encode())
    with pytest.raises(CfgError):
        parse_network(HUGE.encode())  # the context ended


def test_activation_budget_names_the_layer():
    # 16384 x 16384 x 3 input, a 1024-filter conv: 1 TiB of output
    text = cfg(conv(4), conv(1024), width=16384)
    with pytest.raises(CfgError, match=r"activations for one image .* above the budget of 32.0 GiB") as e:
        parse_network(text.encode())
    assert e.value.index == 1


def test_every_reference_cfg_is_admitted_and_yolov4_at_1024():
    cfgs = reference_cfgs()
    assert len(cfgs) >= 18
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in cfgs:
            parse_network(path)
        nd = parse_network(REFERENCE / "alexeyab" / "cfg" / "yolov4.cfg", width=1024, height=1024)
    assert nd.activation_bytes < limits.MAX_ACTIVATION_BYTES / 8


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_weight_rule_equals_the_built_layers_tensors(kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nd = parse_network(cfg(*MINIMAL[kind]).encode())
        model = build_model(nd)
    built = [sum(t.numel() for _, t in (layer.darknet_tensors() if hasattr(layer, "darknet_tensors") else []))
             for layer in model.layers]
    assert nd.weight_counts == built
    assert nd.weight_floats == count_floats(model)


def test_cli_validate_refuses_and_names_the_flag(tmp_path, capsys):
    p = tmp_path / "huge.cfg"
    p.write_text(HUGE)
    assert main(["validate-cfg", str(p)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"darknet-py: error: {p}:{locate(HUGE, 'convolutional', 2, 'filters')}: [convolutional] "
                          "(layer 1)"), err
    assert "--no-limits" in err and "limits=False" not in err and len(err.splitlines()) == 1


# Measures the peak RSS (VmHWM: a child's ru_maxrss starts at the forking test process's own) of
# `summary --no-limits` on the 20 M-filter cfg: building the layer would allocate its 5.4 GiB of weights.
PEAK = """
import sys
from darknet_py.cli.main import main
rc = main(["summary", "--no-limits", sys.argv[1]])
print("PEAK_KB", int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]), "RC", rc)
"""


def test_summary_with_no_limits_prints_without_allocating(tmp_path):
    p = tmp_path / "huge.cfg"
    p.write_text(HUGE)
    out = subprocess.run([sys.executable, "-c", PEAK, str(p)], capture_output=True, text=True, timeout=120,
                         env=child_env(), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1].split()
    assert last[3] == "0", out.stdout
    peak_mb = int(last[1]) / 1024
    assert peak_mb < 1024, peak_mb  # torch's import is ~ 300-500 MB; the weights alone would be 5500 MB
    assert f"{8 * 4 + 8 * 27 + 20000000 * 76} weight floats" in out.stdout
