from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="darknet-py",
    version="0.1.0",
    description="Darknet-compatible YOLOv3 in PyTorch: original cfg and weights files, Darknet's exact results",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
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
        # precision-recall curves (darknet-py detector map --plot), the chart of detector train --map
        "plot": ["matplotlib>=3.5"],
        # the suite and `make lint` (ruff and mypy pinned: their rules change between releases)
        "test": ["pytest>=7", "hypothesis>=6", "onnx>=1.14", "onnxruntime>=1.16", "matplotlib>=3.5",
                 "ruff==0.17.6", "mypy==2.4.1"],
    },
    entry_points={"console_scripts": ["darknet-py=darknet_py.cli:main"]},
)
