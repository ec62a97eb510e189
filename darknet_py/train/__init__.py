"""Training as Darknet's ``detector train`` does it: the YOLOv3 loss, Darknet's augmentation and
schedule, Darknet's checkpoints."""
