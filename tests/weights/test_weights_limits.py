"""Files that would hang or exhaust memory are refused before they are read: named pipes, devices,
sockets and folders given as cfg, weights, checkpoint, names, data, list or photo; a weights file far
longer than its cfg (sized by stat, never read); a checkpoint whose zip entries expand beyond what
the cfg or the budget allows (a deflated zip bomb is refused in a few MB). NaN in a checkpoint warns
with the layer, as in a .weights file. Checks that could hang run in a child with a timeout."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
import torch

from darknet_py.checkpoint import load_checkpoint, save_checkpoint
from darknet_py.errors import WeightsError
from darknet_py.weights import load_weights
from tests.helpers.processes import child_env
from tests.helpers.weights import SMALL_CFG, header_v2, small_model

# In a child (a regression would block on the FIFO forever): every reader given a FIFO, /dev/zero
# and a folder; each must raise its own typed error naming the path and what it is.
READERS = r"""
import os, sys
from darknet_py.config.data import read_data_config
from darknet_py.config.names import read_names
from darknet_py.config.lists import read_image_list
from darknet_py.config.reader import read_cfg
from darknet_py.checkpoint import load_checkpoint
from darknet_py.errors import DarknetPyError
from darknet_py.graph import build_model
from darknet_py.imageio import load_image
from darknet_py.stream.inputs import expand_inputs
from tests.helpers.weights import SMALL_CFG
fifo, folder = sys.argv[1], sys.argv[2]
model = build_model(SMALL_CFG.encode())
calls = {"cfg": read_cfg, "weights": model.load_weights, "checkpoint": load_checkpoint, "names": read_names,
         "data": read_data_config, "list": read_image_list, "photo": load_image}
for path in (fifo, "/dev/zero", folder):
    for what, fn in calls.items():
        try:
            fn(path)
            print("NOT REFUSED", what, path)
        except DarknetPyError as e:
            print(type(e).__name__, what, e)
    print("INPUT", expand_inputs([path + ".jpg" if path == fifo else path])[0])
print("DONE")
"""


def test_special_files_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    os.mkfifo(tmp_path / "pipe.jpg")
    out = subprocess.run([sys.executable, "-c", READERS, str(fifo), str(tmp_path)], capture_output=True, text=True,
                         timeout=120, env=child_env(), cwd=os.getcwd())
    lines = out.stdout.splitlines()
    assert lines and lines[-1] == "DONE", (out.stdout, out.stderr)
    assert not [line for line in lines if line.startswith("NOT REFUSED")], out.stdout
    refused = [line for line in lines if not line.startswith("INPUT")]
    for what in (f"{fifo}: is a named pipe (FIFO)", "/dev/zero: is a character device", f"{tmp_path}: is a directory"):
        assert sum(f"{what}, not a regular file" in line for line in refused) == 7, (what, out.stdout)
    inputs = [line for line in lines if line.startswith("INPUT")]
    assert f"error='{fifo}.jpg: is a named pipe (FIFO), not a regular file'" in inputs[0], inputs
    assert "error='/dev/zero: is a character device, not a regular file'" in inputs[1], inputs


# A weights file of 64 GiB (sparse: it costs no disk) for a cfg of a few KB: refused by its size, and
# reading it would take far more memory than the child's peak.
SPARSE = r"""
import sys
from darknet_py.errors import WeightsError
from darknet_py.graph import build_model
from tests.helpers.weights import SMALL_CFG
model = build_model(SMALL_CFG.encode())
try:
    model.load_weights(sys.argv[1])
except WeightsError as e:
    print("REFUSED", e)
print("PEAK_KB", int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]))
"""


def test_huge_weights_file_is_sized_by_stat_not_read(tmp_path):
    p = tmp_path / "huge.weights"
    with open(p, "wb") as fh:
        fh.write(header_v2())
        fh.truncate(64 * 2 ** 30)
    out = subprocess.run([sys.executable, "-c", SPARSE, str(p)], capture_output=True, text=True, timeout=120,
                         env=child_env(), cwd=os.getcwd())
    assert f"REFUSED {p}: file is {64 * 2 ** 30} bytes, the cfg needs" in out.stdout, (out.stdout, out.stderr)
    peak_mb = int(out.stdout.split("PEAK_KB")[1]) / 1024
    assert peak_mb < 2048, peak_mb  # reading the file would need 64 GiB


def test_weights_longer_than_cfg_with_upto_reads_only_the_prefix(tmp_path):
    model = small_model()
    need = sum(t.numel() for t in model.state_dict().values())  # an upper bound of the file's floats
    p = tmp_path / "long.weights"
    floats = np.random.default_rng(0).standard_normal(need + 1000).astype("<f4")
    p.write_bytes(header_v2() + floats.tobytes())
    load_weights(model, p, upto=2)  # the layers before 2 come from the file's start
    first = model.layers[0].darknet_tensors()[0][1]
    np.testing.assert_array_equal(first.detach().numpy().ravel(), floats[:first.numel()])


# A zip whose one entry is 4 GiB of deflated zeros (18 MB on disk), given as the weights of a small
# cfg: torch.load would inflate it.
BOMB = r"""
import sys
from darknet_py.detector import load
from darknet_py.errors import WeightsError
from tests.helpers.weights import SMALL_CFG
before = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
try:
    load(SMALL_CFG.encode(), sys.argv[1])
except WeightsError as e:
    print("REFUSED", e)
print("PEAK_KB", before, int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]))
"""


def test_checkpoint_zip_bomb_refused_before_torch_load(tmp_path):
    p = tmp_path / "bomb.pt"
    chunk = bytes(2 ** 24)
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("bomb/data/0", "w", force_zip64=True) as fh:
            for _ in range(256):
                fh.write(chunk)
    assert os.path.getsize(p) < 32 * 2 ** 20
    out = subprocess.run([sys.executable, "-c", BOMB, str(p)], capture_output=True, text=True, timeout=120,
                         env=child_env(), cwd=os.getcwd())
    assert f"REFUSED {p}: checkpoint content is {2 ** 32} bytes (4.0 GiB) uncompressed" in out.stdout, \
        (out.stdout, out.stderr)
    before, peak = (int(v) / 1024 for v in out.stdout.split("PEAK_KB")[1].split())
    assert peak - before < 200, (before, peak)  # MB used by the refusal itself; inflating it takes 4096


def test_checkpoint_larger_than_its_cfg_is_refused_against_the_model(tmp_path):
    from darknet_py.detector import load

    p = tmp_path / "c.pt"
    state = {"pad": torch.zeros(20 * 2 ** 20)}  # 80 MB: more than a small cfg's tensors and the overhead
    torch.save({"state_dict": state, "cfg": SMALL_CFG}, p)
    with pytest.raises(WeightsError, match="more than the cfg's tensors take"):
        load(SMALL_CFG.encode(), p)


def test_nan_in_a_checkpoint_warns_naming_the_layer(tmp_path):
    model = small_model()
    name, t = model.layers[2].darknet_tensors()[-1]
    with torch.no_grad():
        t.view(-1)[:3] = float("nan")
    p = tmp_path / "nan.pt"
    save_checkpoint(model, p)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_checkpoint(p)
    msgs = [str(w.message) for w in caught if "NaN" in str(w.message)]
    line = model.netdef.specs[2].line
    assert msgs == [f"{p}: layer 2 [{model.netdef.sections[3].kind}] (cfg line {line}): {name} has 3 NaN/Inf "
                    "values"], msgs
