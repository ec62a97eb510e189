"""What ``detect`` runs over: INPUT strings -> items (photos, videos, cameras, and the errors met
listing them), in order, and the output names each item will be written under."""
from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config.lists import ListedImage, scan_image_list
from ..errors import DataError, UsageError
from ..limits import special_file_problem

# Files taken from folders and glob matches (what darknet_py.imageio can decode); others are skipped there.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pbm", ".pnm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
                    ".3gp", ".ogv", ".mjpeg", ".mjpg")
LIST_EXTENSIONS = (".txt", ".list")
# Drawn photos keep their own format where OpenCV writes it; others become .jpg.
DRAWN_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# Annotated videos: containers with an encoder every OpenCV FFmpeg build has (opencv-python-headless too).
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}


@dataclass(frozen=True)
class Item:
    """One thing to run: a photo, a video, a camera, or an error met while listing the inputs."""

    kind: str                    # "image", "video", "camera" or "error"
    name: str                    # as reported (JSON "image"): the path as given, listed or found
    path: str | None = None   # what to open (list entries resolved); a video may be a URL
    rel: str = ""                # its name in the output folders: relative, with extension
    camera: int | None = None
    error: str | None = None  # kind "error": the one-line message
    option: tuple[str, str] | None = None  # kind "error": the argument that would help (errors.spell_option)


def _kind_of(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return "video" if ext in VIDEO_EXTENSIONS else "list" if ext in LIST_EXTENSIONS else "image"


def _safe_rel(value: str) -> str:
    """A relative output name for a path: itself when it stays below the output folder, else its name."""
    p = Path(value)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        return p.name or "input"
    return p.as_posix()


def _file_item(path: str, rel: str) -> list[Item]:
    problem = special_file_problem(path)
    if problem:  # a FIFO as a photo, video or list would block its reader forever
        return [Item("error", path, error=f"{path}: {problem}")]
    kind = _kind_of(path)
    if kind == "list":
        return _list_items(path)
    return [Item(kind, path, path, rel)]


def _list_items(path: str) -> list[Item]:
    """Darknet's image list (darknet_py.config.lists), lenient: a bad entry becomes an error item
    reported in its place, the others still run."""
    try:
        entries = scan_image_list(path)
    except DataError as e:
        return [Item("error", path, error=str(e))]
    list_dir = Path(path).parent
    items: list[Item] = []
    for e in entries:
        where = f"{path}:{e.line}"
        if isinstance(e, ListedImage):
            kind = "video" if _kind_of(e.listed) == "video" else "image"
            items.append(Item(kind, os.fspath(e.path), os.fspath(e.path), _safe_rel(e.listed)))
        elif e.message == "blank line":
            items.append(Item("error", where, error=f"{where}: blank line in the image list"))
        elif e.message.endswith("not found"):
            items.append(Item("error", where, error=f"{where}: {e.message} (tried relative to the working directory, "
                                                    f"then to {list_dir})"))
        else:
            items.append(Item("error", where, error=f"{where}: {e.message}"))
    if not entries:
        items.append(Item("error", path, error=f"{path}: the image list names no images"))
    return items


def _folder_items(folder: str, recursive: bool) -> list[Item]:
    """Images of a folder sorted by relative path; hidden files (macOS ``._x.jpg``) are not photos."""
    found: list[str] = []
    subfolders = False
    try:
        if recursive:
            for dirpath, dirnames, filenames in os.walk(folder):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel_dir = os.path.relpath(dirpath, folder)
                found += [os.path.normpath(os.path.join(rel_dir, n)) for n in filenames if not n.startswith(".")]
        else:
            with os.scandir(folder) as entries:
                for e in entries:
                    if e.name.startswith("."):
                        continue
                    if e.is_dir():
                        subfolders = True
                    elif e.is_file():
                        found.append(e.name)
    except OSError as e:
        return [Item("error", folder, error=f"{folder}: cannot list the folder: {e.strerror or e}")]
    rels = sorted(Path(r).as_posix() for r in found if os.path.splitext(r)[1].lower() in IMAGE_EXTENSIONS)
    if not rels:
        hint = "; recursive=True searches its subfolders" if subfolders else ""
        return [Item("error", folder, error=f"{folder}: no images in the folder ({', '.join(IMAGE_EXTENSIONS)}){hint}",
                     option=("recursive", "True") if subfolders else None)]
    return [Item("image", os.path.join(folder, r), os.path.join(folder, r), r) for r in rels]


def _parts_match(parts: Sequence[str], pats: Sequence[str]) -> bool:
    """glob's rules on path components: ``**`` any number of folders, ``*``/``?``/``[]`` within one
    name, which hidden names (a leading dot) match only when the pattern's component starts with one."""
    if not pats:
        return not parts
    if pats[0] == "**":
        return any(_parts_match(parts[i:], pats[1:]) for i in range(len(parts) + 1)
                   if not any(p.startswith(".") for p in parts[:i]))
    return (bool(parts) and (not parts[0].startswith(".") or pats[0].startswith("."))
            and fnmatch.fnmatchcase(parts[0], pats[0]) and _parts_match(parts[1:], pats[1:]))


def _recursive_glob(base: str, pats: Sequence[str]) -> list[str]:
    """Files under ``base`` matching the components ``pats`` (with ``**``). Python's glob follows a
    symlinked folder each time it meets it, so a link to a parent repeats every photo until the
    path is too long (2 photos gave 82 matches); here each real folder is walked once."""
    found = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".") or any(p.startswith(".") for p in pats)]
        rel = os.path.relpath(dirpath, base)
        rel_parts = [] if rel == "." else Path(rel).parts
        for name in filenames:
            if _parts_match([*rel_parts, name], pats):
                path = os.path.join(dirpath, name)
                found.append(path[2:] if base == "." and path.startswith("./") else path)
    return found


def _glob_items(pattern: str) -> list[Item]:
    parts = Path(pattern).parts
    fixed = [p for p in parts[:next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))]]
    base = os.path.join(*fixed) if fixed else "."
    pats = parts[len(fixed):]
    matches = _recursive_glob(base, pats) if "**" in pats else glob.glob(pattern)
    items = []
    for match in sorted(matches):
        ext = os.path.splitext(match)[1].lower()
        if not os.path.isfile(match) or ext not in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
            continue
        kind = "video" if ext in VIDEO_EXTENSIONS else "image"
        items.append(Item(kind, match, match, _safe_rel(os.path.relpath(match, base))))
    if not items:
        return [Item("error", pattern, error=f"{pattern}: no image or video files match")]
    return items


def expand_inputs(inputs: Sequence[str], *, recursive: bool = False, cameras: Sequence[int] = ()) -> list[Item]:
    """INPUT strings -> items, in order. Each INPUT is an image file, a folder (its images sorted;
    ``recursive`` for subfolders), a glob pattern, an image list (.txt/.list), a video file or URL,
    or a camera index ("0"); ``cameras`` are added at the end. Problems (an empty folder, a glob
    that matches nothing, a bad list entry) become error items in their place; a missing photo
    stays a photo, which its decoding then reports."""
    items: list[Item] = []
    for s in inputs:
        p = Path(s)
        if "://" in s:
            items.append(Item("video", s, s, _safe_rel(Path(s.split("?")[0]).name or "stream") + ".mp4"))
        elif p.is_dir():
            items += _folder_items(s, recursive)
        elif p.exists():
            items += _file_item(s, p.name)
        elif glob.has_magic(s):
            items += _glob_items(s)
        elif s.isdigit():
            items.append(Item("camera", f"camera {int(s)}", rel=f"camera{int(s)}.mp4", camera=int(s)))
        else:
            items += _file_item(s, p.name)
    for c in cameras:
        items.append(Item("camera", f"camera {c}", rel=f"camera{c}.mp4", camera=int(c)))
    return items


def _stem(rel: str) -> str:
    return os.path.splitext(rel)[0]


def drawn_rel(rel: str) -> str:
    """Name of a drawn photo in the drawn-photo folder: the photo's own, with .jpg where OpenCV
    cannot write its format."""
    return rel if os.path.splitext(rel)[1].lower() in DRAWN_EXTENSIONS else _stem(rel) + ".jpg"


def video_rel(item: Item) -> str:
    ext = os.path.splitext(item.rel)[1].lower()
    return _stem(item.rel) + (ext if ext in FOURCC else ".mp4")


def check_output_names(items: Sequence[Item], labels_dir: str | None, drawn_dir: str | None) -> None:
    """Refuse before running what would silently lose results: two inputs written to the same
    file of the label folder or the drawn-photo folder (a.jpg and a.png both make a.txt), or a
    drawn photo over its source."""
    if not labels_dir and not drawn_dir:
        return
    owner: dict[str, str] = {}
    for it in items:
        if it.kind == "error":
            continue
        src = os.path.realpath(it.path) if it.path else it.name
        key = _stem(it.rel)
        if owner.setdefault(key, src) != src:
            first = next(i.name for i in items if i.kind != "error" and _stem(i.rel) == key)
            raise UsageError(f"{first} and {it.name} would both be written as '{key}.*' in the output folders; "
                             "give them separately or rename one")
        if drawn_dir and it.path and it.kind == "image":
            out = os.path.realpath(os.path.join(drawn_dir, drawn_rel(it.rel)))
            if out == src:
                raise UsageError(f"{drawn_dir}: drawing there would overwrite the input {it.name} with its drawn copy")


__all__ = ["DRAWN_EXTENSIONS", "FOURCC", "IMAGE_EXTENSIONS", "Item", "LIST_EXTENSIONS", "VIDEO_EXTENSIONS",
           "check_output_names", "drawn_rel", "expand_inputs", "video_rel"]
