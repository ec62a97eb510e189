"""Options anywhere among a command's inputs, as Darknet takes them (darknet_py.cli.main.parse_args):
``detector test DATA CFG WEIGHTS -ext_output dog.jpg`` (AlexeyAB's README form) parses as with the
options last, for every command; a path that begins with '-' goes after '--'."""
from __future__ import annotations

import pytest

from darknet_py.cli.main import main, parse_args
from tests.helpers.paths import ROOT

CFG = str(ROOT / "cfg" / "yolov3-tiny-shapes.cfg")
WEIGHTS = str(ROOT / "weights" / "yolov3-tiny-shapes.weights")
PHOTO = str(ROOT / "data" / "shapes.jpg")
NAMES = str(ROOT / "cfg" / "shapes.names")

# (the command's words, its inputs, its options as (flag, value...) groups); nothing here is run
COMMANDS = {
    "detect": (["detect"], [CFG, WEIGHTS, PHOTO, "b.jpg"],
               [["-thresh", "0.25"], ["--names", NAMES], ["-ext_output"], ["-o", "out"]]),
    "detector test": (["detector", "test"], ["x.data", CFG, WEIGHTS, PHOTO, "list.txt"],
                      [["-thresh", "0.25"], ["-ext_output"], ["-dont_show"], ["-out", "p"]]),
    "detector valid": (["detector", "valid"], ["x.data", CFG, WEIGHTS], [["-out", "r"], ["--batch", "2"]]),
    "detector map": (["detector", "map"], ["x.data", CFG, WEIGHTS],
                     [["-iou_thresh", "0.75"], ["--report", "r.json"], ["--thresh", "0.01"]]),
    "detector recall": (["detector", "recall"], ["x.data", CFG, WEIGHTS], [["-thresh", "0.1"], ["--nms", "0.5"]]),
    "detector train": (["detector", "train"], ["x.data", CFG, WEIGHTS],
                       [["-gpus", "0"], ["--max-batches", "10"], ["-clear"], ["-dont_show"]]),
    "detector calc_anchors": (["detector", "calc_anchors"], ["x.data"],
                              [["-num_of_clusters", "6"], ["-width", "320"], ["-height", "256"]]),
    "classifier predict": (["classifier", "predict"], ["x.data", CFG, WEIGHTS, PHOTO, "b.jpg"],
                           [["-t", "3"], ["--device", "cpu"]]),
    "export": (["export"], [CFG, WEIGHTS], [["--format", "pt"], ["--size", "96"], ["-o", "m.pt"]]),
    "inspect-weights": (["inspect-weights"], [CFG, WEIGHTS], [["--partial", "5"], ["--seen-bytes", "4"]]),
    "partial": (["partial"], [CFG, WEIGHTS, "out.weights", "5"], [["--no-limits"], ["--debug"]]),
    "convert": (["convert"], ["m.pt", "out.weights"], [["--cfg", CFG]]),
    "validate-cfg": (["validate-cfg"], [CFG], [["--size", "320"], ["-v"]]),
    "summary": (["summary"], [CFG], [["--size", "320"], ["--debug"]]),
    "synth": (["synth"], ["dataset"], [["--train", "5"], ["--seed", "2"]]),
}


def placements(words, inputs, options):
    """argv with the options last (the reference), first, after the first input, and spread
    one group after each input in turn."""
    flat = [a for group in options for a in group]
    spread = list(inputs)
    for k, group in enumerate(options):
        spread[min(k, len(inputs) - 1)] += "\0" + "\0".join(group)
    yield "last", [*words, *inputs, *flat]
    yield "first", [*words, *flat, *inputs]
    yield "between", [*words, inputs[0], *flat, *inputs[1:]]
    yield "spread", [*words, *(a for item in spread for a in item.split("\0"))]
    if len(words) == 2:  # before the action too: `detector -thresh .25 test ...`
        yield "before action", [words[0], *flat, words[1], *inputs]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_options_anywhere_parse_as_options_last(command):
    words, inputs, options = COMMANDS[command]
    forms = dict(placements(words, inputs, options))
    want = vars(parse_args(forms.pop("last")))
    for name, argv in forms.items():
        assert vars(parse_args(argv)) == want, (name, argv)


def test_debug_before_or_after_the_command():
    argv = ["detect", CFG, WEIGHTS, PHOTO]
    assert not parse_args(argv).debug
    assert parse_args(["--debug", *argv]).debug
    assert parse_args([*argv[:2], "--debug", *argv[2:]]).debug


def test_paths_beginning_with_a_dash_after_double_dash():
    args = parse_args(["detect", CFG, WEIGHTS, "-thresh", "0.25", "--", "-odd.jpg", "-thresh", "--json"])
    assert args.thresh == 0.25 and not args.json
    assert args.images == ["-odd.jpg", "-thresh", "--json"]  # after '--': paths, as typed


def _lines(text: str) -> list[str]:
    """Output lines without the timing of the 'Predicted in' lines."""
    return [line.split(": Predicted in ")[0] for line in text.splitlines()]


@pytest.mark.parametrize("form", ["detector test", "detect"])
def test_options_between_inputs_run_as_options_last(form, tmp_path, capsys):
    """The forms that failed with 'unrecognized arguments: dog.jpg' run and print what the options-last
    form prints: AlexeyAB's `detector test DATA CFG WEIGHTS -ext_output dog.jpg`, and `detect CFG
    WEIGHTS --names N list.txt` with an image list."""
    listing = tmp_path / "list.txt"
    listing.write_text(f"{PHOTO}\n{PHOTO}\n")
    data = tmp_path / "shapes.data"
    data.write_text(f"classes=6\nnames={NAMES}\n")
    if form == "detect":
        words, inputs = ["detect", CFG, WEIGHTS], [str(listing)]
        options = ["--names", NAMES, "-thresh", "0.25", "-ext_output", "--save-dir", str(tmp_path / "{}")]
    else:
        words, inputs = ["detector", "test", str(data), CFG, WEIGHTS], [PHOTO]
        options = ["-ext_output", "-thresh", "0.25", "-out", str(tmp_path / "{}")]
    outputs = {}
    for where in ("last", "between"):
        opts = [o.format(where) for o in options]
        argv = [*words, *inputs, *opts] if where == "last" else [*words, *opts, *inputs]
        assert main(argv) == 0, argv
        outputs[where] = _lines(capsys.readouterr().out)
    assert outputs["between"] == outputs["last"]
    assert len(outputs["last"]) > 1 and any("left_x:" in line for line in outputs["last"])  # -ext_output
