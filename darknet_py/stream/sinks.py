"""Where a stream's results go, in input order: Darknet's lines, JSON lines, YOLO label files, drawn
photos and annotated videos. Text outputs are written by one process (rank 0 under torchrun);
files by the process that ran the photo."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

import cv2
import numpy as np

from ..draw import draw_detections, group_by_box
from ..errors import OutputError, UsageError
from ..files import write_text
from ..imageio import save_image
from ..postprocess import Detections
from .inputs import DRAWN_EXTENSIONS, FOURCC, Item, _stem, drawn_rel, video_rel


@dataclass
class Result:
    """One photo or video frame, or one failure, in input order."""

    index: int                         # the item's position in the whole input list
    item: Item
    frame: int | None = None        # video/camera frame number, from 0
    width: int = 0
    height: int = 0
    dets: Detections | None = None  # on the CPU
    seconds: float = 0.0               # its batch's detection time / the batch size
    rgb: np.ndarray | None = None   # the photo (keep_rgb), for drawing
    fps: float = 0.0                   # video: frames per second
    error: str | None = None


def darknet_lines(name: str, dets: Detections, names: Sequence[str], seconds: float, ext_output: bool) -> str:
    """Darknet's ``test_detector`` output: "NAME: Predicted in T seconds." and "class: NN%" lines."""
    lines = [f"{name}: Predicted in {seconds:f} seconds."]
    boxes = dets.boxes.tolist()
    cls, scores = dets.classes.tolist(), dets.scores.tolist()
    for _, rows in group_by_box(dets):
        for r in rows:
            line = f"{names[cls[r]]}: {scores[r] * 100:.0f}%"
            if ext_output:
                x1, y1, x2, y2 = boxes[r]
                line += f"\t(left_x: {x1:4.0f}   top_y: {y1:4.0f}   width: {x2 - x1:4.0f}   height: {y2 - y1:4.0f})"
            lines.append(line)
    return "\n".join(lines) + "\n"


def json_record(result: Result, names: Sequence[str]) -> dict:
    """One JSON line: image, [frame,] width, height, seconds, detections (class_id, name, score, box
    x1,y1,x2,y2 in photo pixels, clipped as Darknet draws them, rounded to 0.01)."""
    dets = result.dets
    rec: dict = {"image": result.item.name}
    if result.frame is not None:
        rec["frame"] = result.frame
    boxes = dets.boxes.tolist()
    rec.update(width=result.width, height=result.height, seconds=round(result.seconds, 6),
               detections=[{"class_id": int(c), "name": names[int(c)], "score": float(s),
                            "box": [round(v, 2) for v in boxes[i]]}
                           for i, (c, s) in enumerate(zip(dets.classes.tolist(), dets.scores.tolist()))])
    return rec


def yolo_lines(dets: Detections, width: int, height: int, with_score: bool = False) -> str:
    """Darknet/YOLO label rows ``class cx cy w h`` relative to the photo (one per class of a box),
    from the reported pixel boxes; ``with_score`` adds the score as a sixth column."""
    rows = []
    for (x1, y1, x2, y2), c, s in zip(dets.boxes.double().tolist(), dets.classes.tolist(), dets.scores.tolist()):
        vals = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
        rows.append(f"{int(c)} " + " ".join(f"{v:.6f}" for v in vals) + (f" {s:.6f}" if with_score else "") + "\n")
    return "".join(rows)


def legacy_out_path(out: str, image: str, several: bool) -> str:
    """Darknet's ``-out``: a name to which .jpg is added unless it has an image extension;
    several photos get NAME-<stem>."""
    base, ext = os.path.splitext(out)
    if ext.lower() not in DRAWN_EXTENSIONS:
        base, ext = out, ".jpg"
    if several:
        base = f"{base}-{Path(image).stem}"
    return base + ext


@dataclass
class Outputs:
    """Where results go. Text outputs are written by rank 0 only; files by the process that ran them."""

    text: bool = True                 # Darknet's lines on stdout
    json_stdout: bool = False         # JSON lines on stdout instead of Darknet's lines
    json_out: str | None = None    # JSON lines file
    ext_output: bool = False
    save_txt: str | None = None    # folder of YOLO label files
    save_conf: bool = False
    save_dir: str | None = None    # folder of drawn photos (and annotated videos)
    draw_out: str | None = None    # Darknet's -out naming of drawn photos
    draw_several: bool = False        # -out with several photos: NAME-<stem>
    video_out: str | None = None   # annotated video (several videos: NAME-<stem>.ext)
    video_several: bool = False


def needs_rgb(outputs: Outputs) -> bool:
    return bool(outputs.save_dir or outputs.draw_out or outputs.video_out)


def _mkdir_for(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _open_text(path: str) -> IO[str]:
    return open(_mkdir_for(Path(path)), "w", encoding="utf-8")


def _writing(path, action: Callable):
    """An output that cannot be written stops the run with one line naming it (not a traceback)."""
    try:
        return action()
    except OSError as e:
        raise OutputError(f"cannot write: {e.strerror or e}", os.fspath(path)) from None


class _Videos:
    """Annotated videos being written, closed when their input ends."""

    def __init__(self) -> None:
        self.open: dict[str, tuple[Any, tuple[int, int], int]] = {}

    def write(self, path: str, bgr: np.ndarray, fps: float, index: int) -> None:
        entry = self.open.get(path)
        h, w = bgr.shape[:2]
        if entry is None:
            ext = os.path.splitext(path)[1].lower()
            if ext not in FOURCC:
                raise UsageError(f"{path}: cannot write a video with extension {ext or '(none)'!r}; use one of "
                                 f"{', '.join(FOURCC)}")
            _writing(path, lambda: _mkdir_for(Path(path)))
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*FOURCC[ext]), fps, (w, h))
            if not writer.isOpened():
                raise OutputError(f"OpenCV cannot write this video ({FOURCC[ext]} codec)", path)
            entry = self.open[path] = (writer, (w, h), index)
        if (w, h) != entry[1]:
            raise OutputError(f"a frame of {w}x{h} in a video that started at {entry[1][0]}x{entry[1][1]}", path)
        entry[0].write(bgr)

    def close(self, keep_index: int | None = None) -> None:
        for path in [p for p, e in self.open.items() if e[2] != keep_index]:
            self.open.pop(path)[0].release()


class FileSink:
    """Per-photo files: YOLO txt, drawn photos, annotated videos."""

    def __init__(self, outputs: Outputs, names: Sequence[str], classes: int) -> None:
        self.o, self.names, self.classes = outputs, names, classes
        self.videos = _Videos()

    def handle(self, r: Result) -> None:
        self.videos.close(keep_index=r.index)
        if r.error is not None:
            return
        o = self.o
        suffix = "" if r.frame is None else f"_{r.frame:06d}"
        if o.save_txt:
            path = Path(o.save_txt) / (_stem(r.item.rel) + suffix + ".txt")
            text = yolo_lines(r.dets, r.width, r.height, o.save_conf)
            _writing(path, lambda: write_text(_mkdir_for(path), text))
        if not needs_rgb(o):
            return
        drawn = draw_detections(r.rgb, r.dets, self.names, self.classes)
        if r.frame is None:
            if o.save_dir:
                path = Path(o.save_dir) / drawn_rel(r.item.rel)
                _writing(path, lambda: save_image(_mkdir_for(path), drawn))
            if o.draw_out:
                save_image(legacy_out_path(o.draw_out, r.item.name, o.draw_several), drawn)
            return
        bgr = np.ascontiguousarray(drawn[:, :, ::-1])
        if o.save_dir:
            self.videos.write(os.path.join(o.save_dir, video_rel(r.item)), bgr, r.fps, r.index)
        if o.video_out:
            path = o.video_out
            if o.video_several:
                base, ext = os.path.splitext(path)
                path = f"{base}-{Path(_stem(r.item.rel)).name}{ext}"
            self.videos.write(path, bgr, r.fps, r.index)

    def close(self) -> None:
        self.videos.close()


@dataclass
class TextRecord:
    """A result's text outputs, ready to write (and to send to rank 0 under torchrun)."""

    index: int
    seq: int
    out: str = ""     # stdout: Darknet's lines or a JSON line
    json: str = ""    # the JSON lines file's line
    err: str = ""     # stderr: the failure

    @property
    def key(self) -> tuple[int, int]:
        return self.index, self.seq


def text_record(r: Result, seq: int, outputs: Outputs, names: Sequence[str]) -> TextRecord:
    if r.error is not None:
        return TextRecord(r.index, seq, err=f"darknet-py: {r.error}\n")
    rec = json_record(r, names) if (outputs.json_stdout or outputs.json_out) else None
    line = json.dumps(rec) + "\n" if rec is not None else ""
    out = ""
    if outputs.json_stdout:
        out = line
    elif outputs.text:
        name = r.item.name if r.frame is None else f"{r.item.name} frame {r.frame}"
        out = darknet_lines(name, r.dets, names, r.seconds, outputs.ext_output)
    return TextRecord(r.index, seq, out, line if outputs.json_out else "", "")


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class TextWriter:
    """Writes text records on rank 0: stdout, stderr and the JSON lines file."""

    def __init__(self, outputs: Outputs, out: IO[str], err: IO[str], bar=None) -> None:
        self.out, self.err, self.bar = out, err, bar
        self.json_file: IO[str] | None = None
        if outputs.json_out:
            self.json_file = _writing(outputs.json_out, lambda: _open_text(outputs.json_out))

    def _emit(self, stream: IO[str], text: str) -> None:
        if not text:
            return
        if self.bar is not None and not self.bar.disable and _isatty(stream):
            with self.bar.external_write_mode(file=stream):  # keeps the progress bar out of the lines
                stream.write(text)
        else:
            stream.write(text)

    def write(self, records: Sequence[TextRecord]) -> None:
        for rec in records:
            self._emit(self.err, rec.err)
            self._emit(self.out, rec.out)
            if rec.json and self.json_file is not None:
                self.json_file.write(rec.json)
        # results stream out as their batch finishes, not when a buffer fills
        self.out.flush()
        self.err.flush()
        if self.json_file is not None:
            self.json_file.flush()

    def close(self) -> None:
        if self.json_file is not None:
            self.json_file.close()


__all__ = ["FileSink", "Outputs", "Result", "TextRecord", "TextWriter", "darknet_lines", "json_record",
           "legacy_out_path", "needs_rgb", "text_record", "yolo_lines"]
