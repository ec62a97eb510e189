import importlib.util
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _shipped_module():
    """darknet_py/shipped/__init__.py on its own (it imports only pathlib): its PATTERNS name the files."""
    spec = importlib.util.spec_from_file_location("_darknet_py_shipped",
                                                  HERE / "darknet_py" / "shipped" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildWithShippedFiles(build_py):
    """The checkout's cfg/, weights/ and data/ files (their one copy) into darknet_py/shipped/ of the
    build, so that a wheel runs the commands and the demo on its own. An editable install reads them
    from the checkout instead (darknet_py.shipped.root)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        shipped = _shipped_module()
        target = Path(self.build_lib) / "darknet_py" / "shipped"
        found = shipped.matching(HERE)
        for name in shipped.DEMO:
            if HERE / name not in found:
                raise SystemExit(f"setup.py: {name} is missing from the checkout; the wheel would be incomplete")
        for src in found:
            dest = target / src.relative_to(HERE)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)

setup(
    # "darknet-py" on PyPI is an unrelated project: the distribution is darknet-py-yolov3, the command
    # stays darknet-py and the import darknet_py.
    name="darknet-py-yolov3",
    version="0.1.0",
    description="Darknet-compatible YOLOv3 in PyTorch: original cfg and weights files, Darknet's exact results",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["darknet_py", "darknet_py.*"]),
    python_requires=">=3.9",
    # torch is deliberately unpinned above 2.1: `make install` puts a CPU build in place first
    # where none is installed, and never replaces a user's existing (CUDA) torch.
    install_requires=["numpy>=1.22", "torch>=2.1", "opencv-python-headless>=4.8,<5", "tqdm>=4.60",
                      "pycocotools>=2.0.6"],
    extras_require={
        # ONNX export and its onnxruntime check (darknet-py export --format onnx)
        "export": ["onnx>=1.14", "onnxruntime>=1.16"],
        # the other runtimes `darknet-py export --format` converts for, each checked in its runtime
        "openvino": ["onnx>=1.14", "onnxruntime>=1.16", "openvino>=2024.0"],
        "ncnn": ["ncnn>=1.0.20240410", "pnnx>=20240410"],
        "tflite": ["ai-edge-litert>=2.0"],   # the interpreter; darknet-py writes the file itself
        # TensorRT engines need an NVIDIA GPU (CUDA torch) and NVIDIA's tensorrt wheel
        "tensorrt": ["onnx>=1.14", "onnxruntime>=1.16", "tensorrt>=10.0"],
        # precision-recall curves (darknet-py detector map --plot), the chart of detector train --map
        "plot": ["matplotlib>=3.5"],
        # the suite and `make lint` (ruff and mypy pinned: their rules change between releases)
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6", "onnx>=1.14", "onnxruntime>=1.16", "matplotlib>=3.5",
                 "openvino>=2024.0", "ncnn>=1.0.20240410", "pnnx>=20240410", "ai-edge-litert>=2.0",
                 "ruff==0.17.6", "mypy==2.4.1"],
    },
    cmdclass={"build_py": BuildWithShippedFiles},
    entry_points={"console_scripts": ["darknet-py=darknet_py.cli:main"]},
)
