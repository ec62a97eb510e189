"""Shared test infrastructure, one module per concern, each the single home of its part:

- paths: the checkout (ROOT), the Darknet reference folder (REF), reference files that skip cleanly;
- cfgs: cfg fixture files (tests/fixtures/cfg), variants of a cfg text, section builders;
- reference: Darknet's C ported to Python (box IoU, DIoU, do_nms_sort, detections, [local], read_cfg)
  and the per-image post-processing oracle;
- opencv: the OpenCV (cv2.dnn Darknet importer) runner;
- runtimes: the ONNX Runtime session;
- errors: the cfg-error assertion (CfgError naming the line);
- numeric: relative errors, corner IoU, detection matching;
- models: models with calibrated random weights, written as cfg + .weights files;
- strategies: hypothesis strategies shared by several files.
"""
