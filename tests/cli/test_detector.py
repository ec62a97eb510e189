"""`darknet-py detector test DATA CFG WEIGHTS IMAGE` (darknet_py.cli.detector): Darknet's form of detect,
its class names from the .data file."""
from __future__ import annotations

from darknet_py.cli import main


def test_detector_test_form_reads_names_from_data_file(tiny, tmp_path, capsys):
    cfg, weights, photo = tiny
    names = tmp_path / "my.names"
    names.write_text("\r\n".join(f"thing{i}" for i in range(80)) + "\r\n")
    data = tmp_path / "my.data"
    data.write_text(f"classes = 80\nnames = {names}\n")
    assert main(["detector", "test", str(data), str(cfg), str(weights), str(photo), "-thresh", "0.25",
                 "-out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) > 1 and all(line.startswith("thing") for line in out[1:])
    assert (tmp_path / "x.jpg").exists()  # Darknet's -out appends .jpg
