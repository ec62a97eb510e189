"""A wheel is a complete install: built from this checkout, installed into a fresh environment and run
from a folder outside the checkout, it finds its own cfgs, class names, shipped model and photo, and
runs the command `make demo` runs."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from darknet_py import shipped
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.skipif(os.name == "nt", reason="venv layout of POSIX systems")


def _run(args, cwd, env=None, timeout=120) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _sources(dest: Path) -> Path:
    """What an sdist holds (setup.py, README.md, MANIFEST.in, the package, the shipped files), copied
    so that the build leaves nothing in the checkout and sees no stale build/ folder."""
    for name in ("setup.py", "README.md", "MANIFEST.in"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "darknet_py", dest / "darknet_py", ignore=shutil.ignore_patterns("__pycache__"))
    for f in shipped.matching(ROOT):
        (dest / f.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest / f.relative_to(ROOT))
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, darknet-py script, environment, working folder) of a fresh venv holding only the wheel.
    numpy, torch and OpenCV come from the running environment: --system-site-packages where that is the
    system's, a .pth naming its site-packages where it is itself a venv (its .pth files, an editable
    darknet_py's among them, are not run from there)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = _sources(tmp_path_factory.mktemp("src"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", tmp / "dist", src], cwd=tmp)
    wheels = list((tmp / "dist").glob("*.whl"))
    assert [w.name.split("-")[0] for w in wheels] == ["darknet_py_yolov3"]

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", venv], cwd=tmp)
    python = venv / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).strip())
    (purelib / "outer_environment.pth").write_text("".join(f"{p}\n" for p in site.getsitepackages()))
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheels[0]],
         cwd=tmp)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return python, venv / "bin" / "darknet-py", env, elsewhere, venv


def test_wheel_runs_the_demo_from_its_own_files(installed):
    python, script, env, cwd, venv = installed
    # The installed copy is what runs, with its own files, and COCO's names for 80-class models; then,
    # as `python -m darknet_py.shipped` (one interpreter start less), every shipped file inside the
    # installation and the demo command: the command `make demo` runs, with the installed paths.
    out = _run([python, "-c", "import runpy, darknet_py; from darknet_py.config.names import default_names; "
                "print(darknet_py.__file__, default_names(80)[2], sep='\\n'); "
                "runpy.run_module('darknet_py.shipped', run_name='__main__')"], cwd, env)
    module, car, listing = out.split("\n", 2)
    assert Path(module).is_relative_to(venv), out
    assert car == "car"
    root = Path(module).parent / "shipped"
    listed = [Path(line) for line in listing.splitlines() if line.startswith("/")]
    assert sorted(p.relative_to(root) for p in listed) == sorted(f.relative_to(ROOT) for f in shipped.matching(ROOT))
    demo = shlex.split(listing.split("demo:", 1)[1])
    recipe = re.search(r"(?ms)^demo:\n(.*?)\n\n", (ROOT / "Makefile").read_text()).group(1)
    make_args = shlex.split(recipe.replace("\\\n", " "))
    make_args = make_args[make_args.index("detect") + 1:]
    assert demo[0] == "darknet-py" and demo[1] == "detect"
    assert [str(Path(a).relative_to(root)) if a.startswith("/") else a for a in demo[2:]] == make_args

    out = _run([script, *demo[1:]], cwd, env)
    found = dict(line.split(": ") for line in out.splitlines() if re.fullmatch(r"[a-z]+: \d+%", line))
    names = (ROOT / "cfg" / "shapes.names").read_text().split()
    truth = {names[int(line.split()[0])] for line in (ROOT / "data" / "shapes.txt").read_text().splitlines()}
    assert set(found) == truth, out
    assert (cwd / "predictions.jpg").stat().st_size > 0
