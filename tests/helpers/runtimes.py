"""The single home of the ONNX Runtime session the export checks run an exported file in."""
from __future__ import annotations

from pathlib import Path


def onnx_session(path_or_bytes):
    """An onnxruntime InferenceSession on the CPU with 2 threads (the CI machine's cores), from a
    file path or the model's bytes."""
    import onnxruntime as ort  # the callers skip without it (pytest.importorskip)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
