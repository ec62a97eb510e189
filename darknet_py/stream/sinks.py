"""Where a stream's results go, in input order: Darknet's lines, JSON lines, YOLO label files, drawn
photos and annotated videos. Text outputs are written by one process (rank 0 under torchrun);
files by the process that ran the photo.

Every file goes through darknet_py.files: the names are planned before the run
(:func:`plan_outputs`: no input, special file or other result is written over, an existing file in
an output folder only with ``overwrite``); the JSON lines file and the videos grow under temporary
names and the output folders in hidden stages, all renamed into place when the run ends, however it
ends short of SIGKILL."""
from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

import cv2
import numpy as np

from ..draw import draw_detections, group_by_box
from ..errors import OutputError, UsageError, escape_controls
from ..dataset import label_path_for
from ..files import GrowingFile, OutputPlan, exists_error, StagedFolder, TempPath, note_input, write_text
from ..imageio import save_image
from ..postprocess import Detections
from .inputs import DRAWN_EXTENSIONS, FOURCC, Item, _stem, check_output_names, drawn_rel, video_rel


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
    """Darknet's ``test_detector`` output: "NAME: Predicted in T seconds." and "class: NN%" lines
    (control characters in file and class names escaped: one line each, whatever the names)."""
    lines = [f"{escape_controls(name)}: Predicted in {seconds:f} seconds."]
    boxes = dets.boxes.tolist()
    cls, scores = dets.classes.tolist(), dets.scores.tolist()
    for _, rows in group_by_box(dets):
        for r in rows:
            line = f"{escape_controls(names[cls[r]])}: {scores[r] * 100:.0f}%"
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


# The narrowest box --save-txt writes, in photo pixels.
MIN_LABEL_PIXELS = 1.0


def yolo_lines(dets: Detections, width: int, height: int, with_score: bool = False) -> str:
    """Darknet/YOLO label rows ``class cx cy w h`` relative to the photo (one per class of a box),
    from the reported pixel boxes; ``with_score`` adds the score as a sixth column. Boxes clipped
    to less than a pixel across are left out (the JSON output keeps them)."""
    rows = []
    for (x1, y1, x2, y2), c, s in zip(dets.boxes.double().tolist(), dets.classes.tolist(), dets.scores.tolist()):
        if x2 - x1 < MIN_LABEL_PIXELS or y2 - y1 < MIN_LABEL_PIXELS:
            continue  # a box clipped to a line at the edge: as a training label it would be a zero-size object
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
    overwrite: bool = False           # replace existing files in the output folders


def needs_rgb(outputs: Outputs) -> bool:
    return bool(outputs.save_dir or outputs.draw_out or outputs.video_out)


def video_out_path(outputs: Outputs, item: Item) -> str:
    """The annotated video of ``item`` under ``video_out`` (several videos: NAME-<stem>.ext)."""
    path = outputs.video_out or ""
    if outputs.video_several:
        base, ext = os.path.splitext(path)
        path = f"{base}-{Path(_stem(item.rel)).name}{ext}"
    return path


def _note_stream_inputs(items: Sequence[Item]) -> None:
    """The photos and videos, and the label files beside or under ``labels/`` for each photo (both
    Darknet trees' places), are inputs: no output of the run may replace them."""
    for it in items:
        if it.path and it.kind in ("image", "video"):
            note_input(it.path, it.kind if it.kind == "video" else "photo")
            if it.kind == "image":
                note_input(label_path_for(it.path), f"label file of {it.name}")
                note_input(os.path.splitext(it.path)[0] + ".txt", f"label file of {it.name}")


def plan_outputs(items: Sequence[Item], o: Outputs) -> OutputPlan:
    """Every file the run will write, checked before any work (darknet_py.files.OutputPlan): a
    drawn photo over its input, labels over a dataset's labels, two photos on one output name, a
    result over a device or over an existing file in an output folder are refused here."""
    _note_stream_inputs(items)
    check_output_names(items, o.save_txt, o.save_dir)
    plan = OutputPlan(o.overwrite)
    if o.json_out:
        plan.add(o.json_out, "the JSON lines file")
    for it in items:
        src = f"{it.kind}:{os.path.realpath(it.path) if it.path else it.name}"
        if it.kind == "image":
            if o.save_txt:
                plan.add(os.path.join(o.save_txt, _stem(it.rel) + ".txt"), f"the labels of {it.name}", named=False,
                         source=src)
            if o.save_dir:
                plan.add(os.path.join(o.save_dir, drawn_rel(it.rel)), f"the drawn {it.name}", named=False, source=src)
            if o.draw_out:
                plan.add(legacy_out_path(o.draw_out, it.name, o.draw_several), f"the drawn {it.name}", source=src)
        elif it.kind in ("video", "camera"):
            if o.save_dir:
                plan.add(os.path.join(o.save_dir, video_rel(it)), f"the annotated {it.name}", named=False, source=src)
            if o.video_out:
                plan.add(video_out_path(o, it), f"the annotated {it.name}", source=src)
            if o.save_txt and not o.overwrite:
                pattern = glob.escape(os.path.join(o.save_txt, _stem(it.rel))) + "_[0-9]*.txt"
                taken = sorted(glob.glob(pattern))
                if taken:
                    raise exists_error(taken[0], f"the labels of a frame of {it.name}")
    return plan


def _writing(path, action: Callable):
    """An output that cannot be written stops the run with one line naming it (not a traceback)."""
    try:
        return action()
    except OSError as e:
        raise OutputError(f"cannot write: {e.strerror or e}", os.fspath(path)) from None


class _Videos:
    """Annotated videos being written, each finished (renamed into place) when its input ends."""

    def __init__(self) -> None:
        self.open: dict[str, tuple[Any, tuple[int, int], int, TempPath | None]] = {}

    def write(self, path: str, bgr: np.ndarray, fps: float, index: int, staged: bool = False) -> None:
        """A frame of the video ``path`` (``staged``: a path in a StagedFolder's stage, written as is;
        else written under a temporary name and renamed at its end)."""
        entry = self.open.get(path)
        h, w = bgr.shape[:2]
        if entry is None:
            ext = os.path.splitext(path)[1].lower()
            if ext not in FOURCC:
                raise UsageError(f"{path}: cannot write a video with extension {ext or '(none)'!r}; use one of "
                                 f"{', '.join(FOURCC)}")
            tmp = None if staged else _writing(path, lambda: _temp_beside(path))
            writer = cv2.VideoWriter(tmp.tmp if tmp else path, cv2.VideoWriter_fourcc(*FOURCC[ext]), fps, (w, h))
            if not writer.isOpened():
                if tmp is not None:
                    tmp.discard()
                raise OutputError(f"OpenCV cannot write this video ({FOURCC[ext]} codec)", path)
            entry = self.open[path] = (writer, (w, h), index, tmp)
        if (w, h) != entry[1]:
            raise OutputError(f"a frame of {w}x{h} in a video that started at {entry[1][0]}x{entry[1][1]}", path)
        entry[0].write(bgr)

    def close(self, keep_index: int | None = None) -> None:
        for path in [p for p, e in self.open.items() if e[2] != keep_index]:
            writer, _, _, tmp = self.open.pop(path)
            writer.release()  # writes the index an MP4 needs to play
            if tmp is not None:
                _writing(path, tmp.commit)


def _temp_beside(path: str) -> TempPath:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return TempPath(path)


class FileSink:
    """Per-photo files: YOLO txt, drawn photos, annotated videos. The output folders are staged
    (darknet_py.files.StagedFolder) and :meth:`close` moves them into place."""

    def __init__(self, outputs: Outputs, names: Sequence[str], classes: int, main: bool = True) -> None:
        """``main``: this process holds the output folders' locks (rank 0 under torchrun)."""
        self.o, self.names, self.classes = outputs, names, classes
        self.videos = _Videos()
        self.labels = _writing(outputs.save_txt, lambda: StagedFolder(outputs.save_txt, main)) \
            if outputs.save_txt else None
        try:
            self.drawn = _writing(outputs.save_dir, lambda: StagedFolder(outputs.save_dir, main)) \
                if outputs.save_dir else None
        except BaseException:
            if self.labels is not None:
                self.labels.abort()
            raise

    def handle(self, r: Result) -> None:
        self.videos.close(keep_index=r.index)
        if r.error is not None:
            return
        o = self.o
        suffix = "" if r.frame is None else f"_{r.frame:06d}"
        if self.labels is not None:
            path = self.labels.path(_stem(r.item.rel) + suffix + ".txt")
            text = yolo_lines(r.dets, r.width, r.height, o.save_conf)
            _writing(os.path.join(o.save_txt, _stem(r.item.rel) + suffix + ".txt"), lambda: write_text(path, text))
        if not needs_rgb(o):
            return
        drawn = draw_detections(r.rgb, r.dets, self.names, self.classes)
        if r.frame is None:
            if self.drawn is not None:
                path = self.drawn.path(drawn_rel(r.item.rel))
                _writing(os.path.join(o.save_dir, drawn_rel(r.item.rel)), lambda: save_image(path, drawn))
            if o.draw_out:
                save_image(legacy_out_path(o.draw_out, r.item.name, o.draw_several), drawn)
            return
        bgr = np.ascontiguousarray(drawn[:, :, ::-1])
        if self.drawn is not None:
            self.videos.write(self.drawn.path(video_rel(r.item)), bgr, r.fps, r.index, staged=True)
        if o.video_out:
            self.videos.write(video_out_path(o, r.item), bgr, r.fps, r.index)

    def close(self) -> None:
        """Finish every output: the videos, then the staged folders (also after an error, Ctrl-C or
        SIGTERM: what ran is kept)."""
        try:
            self.videos.close()
        finally:
            for folder, name in ((self.labels, self.o.save_txt), (self.drawn, self.o.save_dir)):
                if folder is not None:
                    _writing(name, folder.finish)


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
        # every input has its JSON line, a failed one with its error, so lines and inputs pair up
        rec = {"image": r.item.name, **({"frame": r.frame} if r.frame is not None else {}), "error": r.error}
        line = json.dumps(rec) + "\n"
        return TextRecord(r.index, seq, out=line if outputs.json_stdout else "",
                          json=line if outputs.json_out else "", err=f"darknet-py: {escape_controls(r.error)}\n")
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
        self.json_file: GrowingFile | None = None
        if outputs.json_out:
            self.json_file = _writing(outputs.json_out, lambda: _growing(outputs.json_out))

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
        """Rename the JSON lines file into place (after an error, Ctrl-C or SIGTERM too)."""
        if self.json_file is not None:
            json_file, self.json_file = self.json_file, None
            _writing(json_file.path, json_file.finish)


def _growing(path: str) -> GrowingFile:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return GrowingFile(path)


__all__ = ["FileSink", "Outputs", "Result", "TextRecord", "TextWriter", "darknet_lines", "json_record",
           "legacy_out_path", "needs_rgb", "plan_outputs", "text_record", "video_out_path", "yolo_lines"]
