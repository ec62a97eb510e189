"""Shared test infrastructure, one module per concern, each the single home of its part.

Across the suite:
- paths: the checkout (ROOT), the Darknet reference folder (REF), reference files that skip cleanly;
- cfgs: cfg fixture files (tests/fixtures/cfg), variants of a cfg text, section builders;
- reference: Darknet's C ported to Python (box IoU, DIoU, do_nms_sort, detections, [local], read_cfg)
  and the per-image post-processing oracle;
- opencv: the OpenCV (cv2.dnn Darknet importer) runner;
- runtimes: the ONNX Runtime session;
- errors: the cfg-error assertion (CfgError naming the line);
- numeric: relative errors, corner IoU, detection matching;
- models: models with calibrated random weights, written as cfg + .weights files;
- strategies: hypothesis strategies shared by several files;
- processes: the environment of the processes the tests start.

For one area of the suite each:
- config (tests/config, tests/test_graph.py), weights (tests/weights), layers and float64_net
  (tests/layers: the float64 NumPy Darknet), heads (the detection heads' C ports), transforms and
  images (tests/test_transforms.py, tests/imageio), detections (tests/postprocess, tests/test_fast.py),
  export (tests/export), stream (tests/stream), validate and evaluation (tests/test_validate.py,
  tests/evaluation), train (tests/train).
"""
