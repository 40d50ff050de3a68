"""Image folders, their splits and transforms, and the built-in digits dataset.

A data folder is either ``DIR/<class>/*.png|jpg`` (split into train/val/test with a fixed seed) or
``DIR/train/<class>/...`` with optional ``DIR/val`` and ``DIR/test`` beside it (split folders named in any case;
``valid``/``validation``, ``training`` and ``testing`` too, as other tools export them).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetransfer import console
from edgetransfer.card import Preprocessing
from edgetransfer.errors import DataError
from edgetransfer.images import (  # one list for training and the device runtime
    IMAGE_SUFFIXES,
    ignored_file,
    ignored_folder,
    not_an_image,
    open_header,
    regular_file,
    to_rgb,
    too_thin,
    unidentified,
)
from edgetransfer.rundir import sha256_file

if TYPE_CHECKING:
    import torch


SPLITS = ("train", "val", "test")
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}  # a folder's name, lower-cased -> the split it holds
MAX_LISTED = 5


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass(frozen=True)
class Splits:
    """The labelled images of a data folder, by split."""

    root: Path
    labels: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    test: tuple[Sample, ...]
    seed: int
    layout: str  # "folders" (DIR/train|val|test) or "split" (split here with ``seed``)
    extra: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> tuple[Sample, ...]:
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {name: len(self.split(name)) for name in SPLITS}

    def fingerprint(self, hashes: dict[Path, str] | None = None) -> str:
        """sha256 over every image's split, class, file name and content: the same data gives the same value."""
        digest = hashlib.sha256()
        for name in SPLITS:
            for sample in sorted(self.split(name), key=lambda s: s.path):
                content = hashes[sample.path] if hashes else file_sha256(sample.path)
                line = f"{name}/{self.labels[sample.label]}/{sample.path.name}:{content}\n"
                digest.update(line.encode("utf-8", "surrogateescape"))  # a file name that is not UTF-8 as its bytes
        return digest.hexdigest()

    def record(self) -> dict[str, Any]:
        """The exact files of each split (relative to the root) with their class and sha256, and the fingerprint:
        what the run was trained, validated and tested on, for export and bench to read back."""
        hashes = {s.path: file_sha256(s.path) for name in SPLITS for s in self.split(name)}
        return {
            "root": str(self.root.resolve()),
            "labels": list(self.labels),
            "seed": self.seed,
            "layout": self.layout,
            "fingerprint": self.fingerprint(hashes),
            "files": {
                name: [[s.path.relative_to(self.root).as_posix(), s.label, hashes[s.path]] for s in self.split(name)]
                for name in SPLITS
            },
        }


def holds_recorded(record: dict[str, Any], root: Path, name: str, first: int = 50) -> bool:
    """Whether ``root`` holds the recorded split ``name`` (one of its first ``first`` files there, by content):
    the run's own folder, perhaps moved; a split without files counts as held."""
    entries = record["files"][name][:first]
    return not entries or any(
        (root / rel).is_file() and file_sha256(root / rel) == digest for rel, _, digest in entries
    )


def splits_from_record(
    record: dict[str, Any], root: Path | str | None = None, *, only: tuple[str, ...] | None = None
) -> Splits:
    """The splits a run recorded (see :meth:`Splits.record`), read from ``root`` (default: where they were). Images
    added to the folder since change nothing; a recorded image that is missing or changed is a :class:`DataError`
    naming it, checked before any is used. ``only``: the splits needed (the others are left empty, unchecked;
    None: all)."""
    root = Path(root or record["root"])
    if not root.is_dir():
        raise DataError(f"the run's data folder {root} is gone; pass --data DIR (the folder it was trained on)")
    labels = tuple(record["labels"])
    splits: dict[str, tuple[Sample, ...]] = {name: () for name in SPLITS}
    for name in only or SPLITS:
        samples = []
        entries = record["files"][name]
        if root != Path(record["root"]) and not holds_recorded(record, root, name):
            raise DataError(  # another labelled folder with the run's class names: none of its images is there
                f"{root} is not the folder the run was trained on: none of the run's {name} images is there (e.g. "
                f"{entries[0][0]}); pass the run's own folder, moved, with --data (to measure on other labelled "
                "images: 'edgetransfer bench --data')"
            )
        for rel, label, digest in entries:
            path = root / rel
            if not path.is_file() and not (root / Path(rel).parts[0]).is_dir():
                raise DataError(
                    f"{root} is not the folder the run was trained on: it has no {Path(rel).parts[0]}/ at its top "
                    f"(the run's images were {rel.rsplit('/', 1)[0]}/..., classes {', '.join(labels)}); pass that "
                    "folder, moved, with --data (to measure on other labelled images: 'edgetransfer bench --data')"
                )
            if not path.is_file():
                raise DataError(f"{path} is missing: the run's {name} split names it; restore it or fine-tune again")
            if file_sha256(path) != digest:  # (hashed once per file state in this process)
                raise DataError(f"{path} changed since the run was trained (its {name} split); restore it")
            samples.append(Sample(path, int(label)))
        splits[name] = tuple(samples)
    return Splits(root, labels, splits["train"], splits["val"], splits["test"], record["seed"], record["layout"])


class _Scan:
    """Checks files once before use: a readable image of a known kind, not empty, not a decompression bomb, not a
    symlink leading out of the data folder. Bad files are collected with the reason; :meth:`finish` stops on them
    unless ``skip_bad``."""

    def __init__(self, root: Path, *, skip_bad: bool = False) -> None:
        self.root, self.skip_bad = root, skip_bad
        self.bad: list[tuple[Path, str]] = []
        self.thumbs: dict[Path, bytes] = {}  # good images' thumbnails (see _thumbnail), for the near-copy look

    def files(self, folder: Path) -> list[Path]:
        """Visible files below ``folder``; symlinked folders are not followed."""
        import os

        found = []
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not ignored_folder(d))
            for d in dirnames:
                if (Path(dirpath) / d).is_symlink():
                    self.bad.append((Path(dirpath) / d, "symlinked folder (not followed)"))
            found += [Path(dirpath) / f for f in sorted(filenames) if not ignored_file(f)]
        return found

    def check(self, files: list[Path]) -> list[Path]:
        """The good images among ``files``."""
        import warnings
        from concurrent.futures import ThreadPoolExecutor

        from PIL import Image

        from edgetransfer.decoded import decode_threads

        root = self.root.resolve()

        def problem(path: Path) -> tuple[str | None, bytes | None]:
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                return "symlink to outside the data folder", None
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                return not_an_image(path), None
            if path.is_symlink() and not path.exists():  # it was a FileNotFoundError traceback
                return "broken symlink (its target is gone)", None
            try:  # what decoding refuses later (a file past the size limit, a FIFO), refused here: said with the rest
                if regular_file(path) == 0:
                    return "empty file", None
            except DataError as exc:
                return str(exc).replace(f" {path}", ""), None
            return _decode_check(path)

        keys = [(*_file_key(path), str(root)) for path in files]
        unknown = [i for i, key in enumerate(keys) if key not in _CHECKED]  # not checked yet in this process
        if unknown:
            # the warnings filter is the process's, so it holds in the pool's threads too (set before they start)
            with (
                console.progress() as bar,
                warnings.catch_warnings(),
                ThreadPoolExecutor(max(1, decode_threads())) as pool,
            ):
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # up to Pillow's hard limit (179 MP)
                warnings.simplefilter("ignore", UserWarning)  # a damaged EXIF tag: Pillow's source line (images.py)
                task = bar.add_task(f"checking images in {self.root}", total=len(unknown), status="")
                for i, (reason, thumb) in zip(unknown, pool.map(problem, [files[i] for i in unknown]), strict=True):
                    bar.update(task, advance=1)
                    _CHECKED[keys[i]] = reason
                    if thumb is not None:
                        _THUMBS[keys[i]] = thumb
        reasons = [_CHECKED[key] for key in keys]  # in the files' order
        good = []
        for path, key, reason in zip(files, keys, reasons, strict=True):
            if reason:
                self.bad.append((path, reason))
            else:
                good.append(path)
                if key in _THUMBS:
                    self.thumbs[path] = _THUMBS[key]
        return good

    def empty(self, classes: dict[str, list[Path]], folder: Path) -> list[str]:
        """The classes of ``folder`` with no file at all (one whose files are all bad is not empty: they are named)."""
        return [
            name
            for name, files in classes.items()
            if not files and not any(path.is_relative_to(folder / name) for path, _ in self.bad)
        ]

    def all_bad(self, classes: dict[str, list[Path]], folder: Path) -> list[str]:
        """The classes of ``folder`` whose files are all bad: skipping them leaves the class without an image."""
        return [
            name
            for name, files in classes.items()
            if not files and any(path.is_relative_to(folder / name) for path, _ in self.bad)
        ]

    def finish(
        self, *, skippable: bool | str = True, empty: list[str] | None = None, all_bad: list[str] | None = None
    ) -> tuple[str, ...]:
        """Raise on bad files unless skipping them; returns the skipped paths (relative to the root).
        ``skippable``: whether the command has --skip-bad for these files (its error suggests it; a text: what to
        suggest); ``empty``: class folders without a file, said in the same error (one fix, not two runs);
        ``all_bad``: classes whose files are all bad (--skip-bad would leave them empty: not suggested alone)."""
        if self.bad and not self.skip_bad:
            listed = ", ".join(f"{p} ({why})" for p, why in self.bad[:MAX_LISTED])
            more = f" and {len(self.bad) - MAX_LISTED} more" if len(self.bad) > MAX_LISTED else ""
            also = f"; class folder(s) without images too: {', '.join(empty)}" if empty else ""
            rest = "to train on the rest"
            if all_bad:  # (--skip-bad was suggested, and then failed: "class folder(s) without images")
                whose = "its" if len(all_bad) == 1 else "their"
                rest = f"to train on the rest, after removing {', '.join(all_bad)}: none of {whose} files can be read"
            raise DataError(
                f"{len(self.bad)} bad file(s) in {self.root}: {listed}{more}; fix or remove them"
                + (f", or pass {skippable}" if isinstance(skippable, str) else "")
                + (f", or pass --skip-bad {rest}" if skippable is True else "")
                + also
            )
        return tuple(str(p.relative_to(self.root)) if p.is_relative_to(self.root) else str(p) for p, _ in self.bad)


# this process's verdicts on files it checked: a search loads one folder for its space and again in every trial's
# fine-tune, and checked (decoded) every image each time, printing "checking images in DIR" each time
_CHECKED: dict[tuple, str | None] = {}
_THUMBS: dict[tuple, bytes] = {}  # and the thumbnails of the good ones (THUMB x THUMB bytes each)


def _file_key(path: Path) -> tuple:
    """What identifies a file's state: its path, device, inode, size, modification and change times (the change
    time moves on every write, rename and chmod, and cannot be set back), for a symlink its target's too, and
    Pillow's pixel limit (the decompression-bomb verdict depends on it)."""
    import os

    from PIL import Image

    def state(p: Path) -> tuple:
        try:
            st = os.stat(p, follow_symlinks=False)
        except OSError:
            return (None,) * 5
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    target = (str(path.resolve()), *state(path.resolve())) if path.is_symlink() else ()
    return (str(path.absolute()), *state(path), *target, Image.MAX_IMAGE_PIXELS)


def _decode_check(path: Path) -> tuple[str | None, bytes | None]:
    """(None, its thumbnail or None) when Pillow decodes the whole image (JPEG at reduced scale, for speed), else
    (why not, None)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            side, thin = min(img.size), too_thin(*img.size)
            if thin:
                return thin, None
            if img.format == "JPEG":
                img.draft("RGB", (128, 128))  # (at 64 px a JPEG copy's thumbnail blurred unlike its original's)
            img.load()
            # as decoding will convert it (a float image with values past 0..65535 failed only there)
            return None, _thumbnail(to_rgb(img), side)
    except Image.UnidentifiedImageError:
        return f"unreadable: {unidentified(path)}", None
    except Image.DecompressionBombError:
        return f"too many pixels (over {2 * Image.MAX_IMAGE_PIXELS:,}: a decompression bomb?)", None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a broken file
        return f"unreadable: {str(exc).splitlines()[0][:80]}", None


THUMB = 32  # a near copy is told by the image's THUMB x THUMB grey thumbnail
NEAR_COPY = 0.95  # correlation of two thumbnails' Laplacians from which two images are near copies (see alike)
NEAR_COPY_LEVELS = 0.99  # and of their grey levels
NEAR_COPY_SIDE = 32  # images with a shorter side below this are not compared (small digits of one class correlate)
NEAR_COPY_PAIRS = 400_000_000  # training x evaluation images compared at most (4,000 x 4,000 took 0.7 s on 2 cores)


def _thumbnail(rgb, side: int) -> bytes | None:
    """The THUMB x THUMB grey thumbnail (uint8 bytes) of an image whose shorter side was ``side`` pixels, or None
    below :data:`NEAR_COPY_SIDE`."""
    from PIL import Image

    if side < NEAR_COPY_SIDE:
        return None
    return rgb.convert("L").resize((THUMB, THUMB), Image.Resampling.BOX).tobytes()


MAX_PAIRS = 1000  # near-copy pairs a card lists (all of them, up to this)


def near_copies(train, evaluation, thumbs: dict[Path, bytes], root: Path) -> dict | None:
    """Images of ``evaluation`` (validation and test) that look like copies of a training image of their class
    (resized, re-encoded, recoloured: see :func:`alike`), not byte-identical ones (those are kept in train or said
    already): ``{"count", "pairs" ("eval ~ train", relative to ``root``; up to :data:`MAX_PAIRS`), "other_classes"
    (how many look alike a training image of another class only), "other_pairs" (up to three)}``. Images of one
    scene with small differences (a shape drawn here or there on one background, a fixed camera's frames) look alike
    at this size whatever their class: where some look alike across classes, this look cannot tell copies in that
    data (the caller says so, not "copies"; a new user's trial). None when there are more pairs than
    :data:`NEAR_COPY_PAIRS` to compare (not looked at)."""

    def vectors(samples) -> tuple[list, tuple[np.ndarray, np.ndarray]]:
        kept = [s for s in samples if s.path in thumbs]
        return kept, unit_rows([thumbs[s.path] for s in kept])

    (trained, t), (scored, e) = vectors(train), vectors(evaluation)
    record: dict = {"count": 0, "pairs": [], "other_classes": 0, "other_pairs": []}
    if not trained or not scored:
        return record
    if len(trained) * len(scored) > NEAR_COPY_PAIRS:
        return None
    classes = np.array([s.label for s in trained])
    found: list[tuple[Sample, Sample]] = []
    across: list[tuple[Sample, Sample]] = []
    for start in range(0, len(scored), 256):
        block = alike((e[0][start : start + 256], e[1][start : start + 256]), t)
        same = block & (np.array([s.label for s in scored[start : start + 256]])[:, None] == classes[None, :])
        for i in np.flatnonzero(same.any(axis=1)):
            found.append((scored[start + i], trained[same[i].argmax()]))
        for i in np.flatnonzero(block.any(axis=1) & ~same.any(axis=1)):
            across.append((scored[start + i], trained[block[i].argmax()]))
    found = [(a, b) for a, b in found if not _same_bytes(a.path, b.path)]
    across = [(a, b) for a, b in across if not _same_bytes(a.path, b.path)]  # (said as copies across classes)

    def named(sample: Sample) -> str:
        return sample.path.relative_to(root).as_posix() if sample.path.is_relative_to(root) else str(sample.path)

    record["count"], record["pairs"] = len(found), [f"{named(a)} ~ {named(b)}" for a, b in found[:MAX_PAIRS]]
    record["other_classes"], record["other_pairs"] = len(across), [f"{named(a)} ~ {named(b)}" for a, b in across[:3]]
    return record


def unit_rows(thumbnails: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(edges, levels): each thumbnail's Laplacian (its edges and texture) and its grey levels less their mean, as
    rows of unit length (their dot products are correlations; a flat image is zeros, which matches none)."""
    grey = np.frombuffer(b"".join(thumbnails), np.uint8).reshape(-1, THUMB, THUMB).astype(np.float32)
    inner = grey[:, 1:-1, 1:-1]
    edges = 4 * inner - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1] - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:]
    levels = grey - grey.mean(axis=(1, 2), keepdims=True)

    def unit(rows: np.ndarray) -> np.ndarray:
        rows = rows.reshape(len(thumbnails), rows[0].size if len(rows) else 0)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 1e-3)

    return unit(edges), unit(levels)


def alike(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Which images of ``a`` look like copies of which of ``b`` (rows of :func:`unit_rows`): their edges correlate
    at :data:`NEAR_COPY` or more and their grey levels at :data:`NEAR_COPY_LEVELS` or more. Both, not one: two
    different smooth gradients (crops of a colour wheel) correlated at 0.999 in grey levels, and images of one
    stripe pattern under different noise (the tests' generated folders) at 0.95 in edges. Chosen on photographs and
    benchmark sets (benchmarks/results/near_copies.md)."""
    return (a[0] @ b[0].T >= NEAR_COPY) & (a[1] @ b[1].T >= NEAR_COPY_LEVELS)


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and file_sha256(a) == file_sha256(b)


def _scan_classes(scan: _Scan, folder: Path) -> dict[str, list[Path]]:
    """Class name -> good image files of ``folder/<class>/``, checked together (under one progress bar: one per class
    read as the whole folder checked again and again)."""
    classes: dict[str, list[Path]] = {}
    folders = sorted(p for p in folder.iterdir() if p.is_dir() and not ignored_folder(p.name))
    linked = [p for p in folders if p.is_symlink()]
    if linked:  # a class, not a bad file: --skip-bad trained on the other classes, the label gone with one word
        named = ", ".join(f"{p.name} -> {p.resolve()}" for p in linked[:MAX_LISTED])
        raise DataError(
            f"class folder(s) in {folder} that are symlinks: {named}; links to folders are not followed (the data's "
            "files stay inside its folder), and a class is not skipped: copy the folder in (cp -rL) or pass --data "
            "a folder that holds the real ones"
        )
    for class_dir in folders:
        try:
            class_dir.name.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(
                f"the class folder {class_dir.name!r} in {folder} has a name that is not UTF-8 (from another system's "
                "encoding?): the name becomes the label inside the model file; rename the folder"
            ) from None
        classes[class_dir.name] = scan.files(class_dir)
    good = set(scan.check([path for files in classes.values() for path in files]))
    return {name: [path for path in files if path in good] for name, files in classes.items()}


def _subfolders(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir() and not ignored_folder(p.name)]


def split_folders(root: Path) -> dict[str, Path]:
    """Split -> its folder in ``root`` (``Train``, ``valid``... as :data:`SPLIT_FOLDERS` says); two folders for one
    split are an error. None when no such folder holds a folder and other folders lie beside them: then they are
    classes named like splits (a vehicles set's 'train')."""
    found: dict[str, Path] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not ignored_folder(p.name)):
        split = SPLIT_FOLDERS.get(folder.name.lower())
        if split in found:
            raise DataError(
                f"{root} has two {split} folders, {found[split].name}/ and {folder.name}/: keep one (or merge them)"
            )
        if split:
            found[split] = folder
    beside = [p for p in _subfolders(root) if p not in found.values()]
    if found and beside and not any(_subfolders(f) for f in found.values()):
        return {}  # train/, val/ or test/ holding images themselves among other class folders: classes of those
        # names (a vehicles set's "train"), not splits, which hold class folders (see load_splits' note)
    holding = [p.name for p in sorted(beside) if _loose_images(p)]
    if set(found) == {"train"} and holding:  # bus/, car/ of images beside train/{steam,electric}/ (a vehicles set:
        # it trained steam against electric, "not read: bus/, car/"; a new user's trial), or train/{cat,dog}/ beside
        # an unlabelled test1/ (Kaggle's): the same shape, two readings; said, not guessed (a review)
        inner = ", ".join(f"{p.name}/" for p in sorted(_subfolders(found["train"]))[:MAX_LISTED])
        named = ", ".join(f"{name}/" for name in holding[:MAX_LISTED])
        raise DataError(
            f"{root} can be read two ways: {found['train'].name}/ holds folders ({inner}) and {named} beside it hold "
            f"images: as split folders, the classes are {found['train'].name}/'s folders and {named} is not read "
            "(move it out of the folder; unlabelled images are for --unlabeled); as classes, one is named "
            f"{found['train'].name}, a name split folders take (rename it, e.g. {found['train'].name}_)"
        )
    return found


def _loose_images(folder: Path) -> list[str]:
    """The names of the files with an image's extension directly in ``folder`` (not in a folder below it)."""
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not ignored_file(p.name) and not p.is_dir()
    )


class Images(tuple):
    """``list_images``' answer: the images, as samples, and in ``skipped`` the bad files passed over ("path (why)",
    relative to the folder), for a record of them beside the note on the console."""

    skipped: tuple[str, ...] = ()


def files_below(folder: Path) -> list[Path]:
    """The visible files below ``folder``, as :func:`list_images` finds them, listed and not decoded (symlinked
    folders not followed)."""
    return _Scan(folder).files(folder)


def list_images(folder: Path | str, *, skip_bad: bool = False, offer: str = "") -> Images:
    """Every image below ``folder`` (unlabelled, e.g. calibration images), each checked to be readable; bad files
    refused (their error suggests ``offer``, the command's option to pass them over, where it has one), or with
    ``skip_bad`` passed over and named."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder} is a file; give a folder of images")
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    scan = _Scan(folder, skip_bad=skip_bad)
    images = scan.check(scan.files(folder))
    skipped = scan.finish(skippable=offer or False)  # the paths of scan.bad, relative to the folder
    named = tuple(f"{path} ({why})" for path, (_, why) in zip(skipped, scan.bad, strict=True))
    listed = ", ".join(named)
    if not images:
        raise DataError(f"{folder} has no images" + (f" that can be read (skipped: {listed})" if skipped else ""))
    if skipped:
        from rich.markup import escape

        console.err.print(
            f"[yellow]note: skipped {len(skipped)} bad file(s) in {escape(str(folder))}: {escape(listed)}[/]"
        )
    found = Images(Sample(path, -1) for path in images)
    found.skipped = named
    return found


def lookalike_classes(labels: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Groups of class names that differ only in case or Unicode form ('Cat' and 'cat'; 'Café' typed on macOS and
    on Linux): most likely one class split in two by accident."""
    import unicodedata

    groups: dict[str, list[str]] = {}
    for label in labels:  # (and spaces at the ends: 'cat ' beside 'cat' printed the same; a new user's trial)
        groups.setdefault(unicodedata.normalize("NFC", label).casefold().strip(), []).append(label)
    return [tuple(group) for group in groups.values() if len(group) > 1]


LOOKALIKE = "differ only in case, Unicode form or spaces at their ends"


def shown_group(group: tuple[str, ...]) -> list[str]:
    """Each name of a :func:`lookalike_classes` group quoted as :func:`_shown` does: 'fusée', 'fusée' (one typed on
    macOS) printed alike."""
    return [_shown(name, next((o for o in group if o != name and _nfc(o) == _nfc(name)), "")) for name in group]


def _nfc(name: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFC", name)


def _shown(name: str, other: str) -> str:
    """``name`` quoted; escaped where only its Unicode form tells it from ``other`` (they print the same)."""
    return ascii(name) if _nfc(name) == _nfc(other) else repr(name)


def _check_classes(
    classes: dict[str, list[Path]],
    where: Path,
    *,
    split: bool = False,
    option: str = "--data",
    all_bad: list[str] = (),
) -> None:
    """``split``: ``where`` is a split's folder (DIR/train), whose classes ``option`` cannot move; ``all_bad``: the
    classes whose files were all skipped as bad (--skip-bad)."""
    if not classes:
        raise DataError(f"{where} has no class folders (expected {where}/<class>/*.png|jpg)")
    empty = [name for name, files in classes.items() if not files]
    if empty:
        skipped = [name for name in empty if name in all_bad or f"{where.name}/{name}" in all_bad]
        why = f" (the files of {', '.join(skipped)} were all skipped as bad: --skip-bad)" if skipped else ""
        raise DataError(
            f"class folder(s) without readable images in {where}: {', '.join(empty)}{why}; each folder there is a "
            "class: add its images or remove it"
        )
    if len(classes) < 2:
        (name,) = classes
        inner = sorted(p.name for p in _subfolders(where / name))
        listed = ", ".join(inner[:MAX_LISTED]) + (" ..." if len(inner) > MAX_LISTED else "")
        hint = (
            f" ({where / name} holds folders: {listed}; if those are the classes, "
            + (
                f"move them up into {where}, and likewise in the other splits)"
                if split
                else f"pass {option} {where / name})"
            )
            if len(inner) > 1
            else ""
        )
        raise DataError(f"{where} has only one class ({name}); a classifier needs at least two{hint}")


def load_splits(
    root: Path | str,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    skip_bad: bool = False,
    option: str = "--data",
) -> Splits:
    """Scan a data folder (checking every file) and return its splits. Bad files stop the scan with their
    paths, or with ``skip_bad`` are left out and listed in ``Splits.extra["skipped"]``. ``option``: the command's
    option that named the folder (its errors' fixes name it)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"data path is not a folder: {root}")
    scan = _Scan(root, skip_bad=skip_bad)
    folders = split_folders(root)
    if "train" in folders:
        per_split = {name: _scan_classes(scan, folders[name]) for name in SPLITS if name in folders}
        empty = [f"{folders['train'].name}/{name}" for name in scan.empty(per_split["train"], folders["train"])]
        bad = [f"{folders['train'].name}/{name}" for name in scan.all_bad(per_split["train"], folders["train"])]
        extra: dict[str, Any] = {"skipped": scan.finish(empty=empty, all_bad=bad)}
        _check_classes(per_split["train"], folders["train"], split=True, option=option, all_bad=bad)
        labels = tuple(per_split["train"])
        for name, classes in per_split.items():
            unknown = set(classes) - set(labels)
            if unknown:
                # 'café' typed on macOS (NFD) in test/ and on Linux (NFC) in train/ look the same: the error named
                # a class that was plainly there (a new user's trial)
                alike = [
                    f"{folders[name].name}/{_shown(other, label)} and {folders['train'].name}/{_shown(label, other)}"
                    for other in sorted(unknown)
                    for group in lookalike_classes((other, *labels))
                    if other in group
                    for label in group
                    if label != other
                ]
                raise DataError(
                    f"{folders[name]} has classes that {folders['train'].name}/ lacks: "
                    + ", ".join(repr(c) if c != c.strip() or not c.isprintable() else c for c in sorted(unknown))
                    + (f" ({'; '.join(alike)} {LOOKALIKE}: rename one folder to match)" if alike else "")
                )
        samples = {
            name: tuple(Sample(p, labels.index(c)) for c, files in per_split.get(name, {}).items() for p in files)
            for name in SPLITS
        }
        loose = {folders[name].name: _loose_images(folders[name]) for name in SPLITS if name in folders}
        if any(loose.values()):  # images in a split folder itself, in no class folder: no label (a Kaggle test/ of
            # unlabelled images; a val/ of 12 images): not read, said (they went unsaid; a new user's trial)
            extra["loose"] = {name: files for name, files in loose.items() if files}
        missing = [name for name in ("val", "test") if not samples[name]]
        if missing:  # no val (or test) folder, or none of its images in class folders: hold out part of train,
            # with the seed (a train/ + val/ set, as many tutorials' are, was refused for its missing test/)
            fractions = {name: (val_fraction if name == "val" else test_fraction) for name in missing}
            train, val, test = stratified(samples["train"], seed, fractions.get("val", 0.0), fractions.get("test", 0.0))
            # copies split apart by the hold-out go back to train; the user's own split folder is not touched
            train, val, test, moved = _copies_together(train, val, test)
            samples.update(train=train, **{name: {"val": val, "test": test}[name] for name in missing})
            for name in missing:
                if name == "val" or samples["test"]:  # (too few to spare a test image: refused, see check_splits)
                    extra[f"{name}_from_train"] = f"{fractions[name]:.0%} of {folders['train'].name}/ per class"
            if moved:
                extra["copies_kept_in_train"] = moved
        _, _, _, across = _copies_together(samples["train"], samples["val"], samples["test"], move=False)
        if across:  # the user's own split folders: not moved, said
            extra["copies_across_splits"] = across
        _copies_across_classes(samples["train"] + samples["val"] + samples["test"], root, extra)
        extra["near_copies"] = near_copies(samples["train"], samples["val"] + samples["test"], scan.thumbs, root)
        others = [
            p
            for p in root.iterdir()
            if not ignored_file(p.name) and not ignored_folder(p.name) and p not in folders.values()
        ]
        if others:  # not read: said, so that images put there by mistake are not lost without a word
            extra["ignored"] = sorted(p.name + "/" * p.is_dir() for p in others)
        return Splits(root, labels, samples["train"], samples["val"], samples["test"], seed, "folders", extra)
    if folders:  # val/ or test/ without train/: these are not classes
        names = ", ".join(f"{f.name}/" for f in folders.values())
        raise DataError(
            f"{root} has {names} but no train/ folder: put the training images in {root}/train/<class>/ beside "
            "them, or give one folder per class without split folders"
        )
    classes = _scan_classes(scan, root)
    bad = scan.all_bad(classes, root)
    extra = {"skipped": scan.finish(empty=scan.empty(classes, root), all_bad=bad)}
    named_like_splits = sorted(c for c in classes if c.lower() in SPLIT_FOLDERS)
    if named_like_splits:  # read as classes (split_folders): said, in case they were meant as splits
        extra["classes_named_like_splits"] = named_like_splits
    stray = sorted(p.name for p in root.iterdir() if not ignored_file(p.name) and not p.is_dir())
    if stray:  # files beside the class folders belong to no class
        extra["ignored"] = stray
    hidden = sorted(
        f"{p.name}/"
        for p in root.iterdir()
        if p.name.startswith(".") and p.name != ".git" and p.is_dir() and _holds_images(p)
    )
    if hidden:  # never a class: said where it holds images (.hidden/ of 14 images went unread, unsaid; a new user's)
        extra["hidden_folders"] = hidden
    _check_classes(classes, root, option=option, all_bad=bad)
    shared = _grouped_classes(classes, root)
    if shared:  # DIR/<group>/<class>/: the groups train as the classes (they did, unsaid: a new user's trial)
        extra["grouped_classes"] = shared
    labels = tuple(classes)
    everything = tuple(Sample(p, i) for i, c in enumerate(labels) for p in classes[c])
    train, val, test = stratified(everything, seed, val_fraction, test_fraction)
    train, val, test, moved = _copies_together(train, val, test)
    if moved:
        extra["copies_kept_in_train"] = moved
    _copies_across_classes(everything, root, extra)
    extra["near_copies"] = near_copies(train, val + test, scan.thumbs, root)
    return Splits(root, labels, train, val, test, seed, "split", extra)


def _holds_images(folder: Path) -> bool:
    """Whether any file below ``folder`` has an image's extension (the first found ends the look)."""
    return any(path.suffix.lower() in IMAGE_SUFFIXES for path in folder.rglob("*"))


def _grouped_classes(classes: dict[str, list[Path]], root: Path) -> list[str]:
    """The folders below the class folders, "class/folder", where no class folder holds an image itself (DIR/photos/
    cat/, DIR/extra/dog/: photos and extra are trained as the classes, and the user may have meant cat and dog); else
    []."""
    inner = set()
    for name, files in classes.items():
        for path in files:
            parts = path.relative_to(root / name).parts
            if len(parts) == 1:
                return []  # an image in the class folder itself: the folders are classes
            inner.add(f"{name}/{parts[0]}")
    return sorted(inner)


# this process's sha256 of files by their state (_file_key): a search loads one folder in every trial, and the copy
# check and the split record read the same files
_HASHED: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """``sha256_file`` once per file state in this process."""
    key = _file_key(path)
    if key not in _HASHED:
        _HASHED[key] = sha256_file(path)
    return _HASHED[key]


def _copies(samples: tuple[Sample, ...]) -> list[list[Sample]]:
    """Groups of byte-identical images (only files of one size are hashed: cheap where there are none)."""
    by_size: dict[int, list[Sample]] = {}
    for sample in samples:
        by_size.setdefault(sample.path.stat().st_size, []).append(sample)
    groups: dict[str, list[Sample]] = {}
    for same in by_size.values():
        if len(same) > 1:
            for sample in same:
                groups.setdefault(file_sha256(sample.path), []).append(sample)
    return [group for group in groups.values() if len(group) > 1]


def _copies_together(train, val, test, *, move: bool = True):
    """Byte-identical images split apart (a copy in train and one in test: the test scored an image trained on)
    moved into train with the rest of their group; (train, val, test, how many moved). ``move=False``: nothing
    moved (the user's own split folders), the count of copies outside train said."""
    where = {s.path: name for name, part in (("train", train), ("val", val), ("test", test)) for s in part}
    away: set[Path] = set()
    for group in _copies(tuple(train) + tuple(val) + tuple(test)):
        if len({where[s.path] for s in group}) > 1:
            away |= {s.path for s in group if where[s.path] != "train"}
    if not away or not move:
        return train, val, test, len(away)
    kept = tuple(s for s in (*val, *test) if s.path in away)
    return (
        tuple(train) + kept,
        tuple(s for s in val if s.path not in away),
        tuple(s for s in test if s.path not in away),
        len(away),
    )


def _copies_across_classes(samples: tuple[Sample, ...], root: Path, extra: dict) -> None:
    """The same image in two classes (contradictory labels): its files (relative to ``root``, ``a = b``) named in
    ``extra`` for the command to say, so that the wrong copy can be found among the class's images."""

    def named(sample: Sample) -> str:
        try:
            return sample.path.relative_to(root).as_posix()
        except ValueError:
            return str(sample.path)

    found = [
        " = ".join(sorted(named(s) for s in group)) for group in _copies(samples) if len({s.label for s in group}) > 1
    ]
    if found:
        extra["copies_across_classes"] = sorted(found)


def median_shorter_side(samples: tuple[Sample, ...], *, limit: int = 500, seed: int = 0) -> int:
    """The median shorter side, in pixels, of up to ``limit`` of ``samples`` (a seeded choice; headers only)."""

    sides = []
    for sample in sampled(samples, limit, seed):
        with open_header(sample.path) as img:
            sides.append(min(img.size))
    sides.sort()
    return sides[len(sides) // 2]


def sampled(samples: tuple[Sample, ...], limit: int, seed: int) -> list[Sample]:
    """Up to ``limit`` of ``samples``: all of them, or a seeded choice (what the image-size looks read)."""
    chosen = list(samples)
    return random.Random(seed).sample(chosen, limit) if len(chosen) > limit else chosen


NARROW = 4.0  # an image more than this many times as long as it is wide (or the reverse) loses most of itself


def narrow_note(samples: tuple[Sample, ...], *, limit: int = 500, seed: int = 0, ratio: float = NARROW) -> str | None:
    """A note when some of up to ``limit`` of ``samples`` (the same seeded choice as :func:`median_shorter_side`;
    headers only) are more than ``ratio``:1: the shorter side is resized and the centre square cropped, so such an
    image keeps only its middle (a 2000x50 strip keeps 2.5 % of itself), and nothing said so."""
    from PIL import Image

    chosen = sampled(samples, limit, seed)
    narrow = []
    for sample in chosen:
        try:
            with open_header(sample.path) as img:  # (Pillow's warnings of a damaged EXIF tag: not on the terminal)
                size = img.size
        except (OSError, ValueError, Image.DecompressionBombError):  # a bad file is said where it is decoded
            continue
        short, long = sorted(size)
        if long > ratio * short:
            narrow.append((short / long, sample.path.name, size))
    if not narrow:
        return None
    kept, name, (width, height) = min(narrow)
    of = f"{len(chosen)} sampled" if len(chosen) < len(samples) else f"{len(chosen)}"
    return (
        f"note: {len(narrow)} of {of} images are more than {ratio:.0f}:1 (the narrowest: {name}, "
        f"{width}x{height}): the centre crop keeps their middle square only ({100 * kept:.1f} % of that one); crop "
        "them around what matters, or pad them to a square, to keep the rest"
    )


def shallow_note(samples: tuple[Sample, ...], *, limit: int = 100, seed: int = 0) -> str | None:
    """A note when most 16-bit images of up to ``limit`` of ``samples`` (a seeded choice) use only the low 12 bits or
    fewer: read as 16-bit (divided by 257), 12-bit camera data keeps about 17 of 256 grey levels, and nothing said
    so (a new user's trial: the median image's brightest pixel was 15 of 255)."""
    import numpy as np
    from PIL import Image

    from edgetransfer.images import SIXTEEN_BIT_MODES

    highest = []
    for sample in sampled(samples, limit, seed):
        try:
            with open_header(sample.path) as img:
                if img.mode in SIXTEEN_BIT_MODES or img.mode == "I":  # ("I" past 255 is read as 16-bit too)
                    top = int(np.asarray(img).max(initial=0))
                    if top > (0 if img.mode != "I" else 255):  # (an all-black image tells nothing)
                        highest.append(top)
        except (OSError, ValueError, Image.DecompressionBombError):  # a bad file is said where it is decoded
            continue
    low = sorted(value for value in highest if value < 4096)
    if not highest or len(low) * 2 <= len(highest):
        return None
    top = low[-1]
    return (
        f"note: {len(low)} of {len(highest)} sampled 16-bit images use values up to {top} only (of 65535: "
        f"{max(1, top.bit_length())}-bit data?): read as 16-bit (divided by 257) they keep at most "
        f"{round(top / 257) + 1} grey levels of 256; scale them to the full 16 bits (or to 8 bits) before training, "
        "and the same on the device"
    )


def stratified(samples: tuple[Sample, ...], seed: int, val_fraction: float, test_fraction: float):
    """Split per class with a fixed seed, keeping at least one image of each class in train."""
    rng = random.Random(seed)
    by_label: dict[int, list[Sample]] = {}
    for sample in samples:
        by_label.setdefault(sample.label, []).append(sample)
    train, val, test = [], [], []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda s: s.path)
        rng.shuffle(group)
        n_test = min(round(len(group) * test_fraction), max(len(group) - 1, 0))
        n_val = min(round(len(group) * val_fraction), max(len(group) - 1 - n_test, 0))
        test += group[:n_test]
        val += group[n_test : n_test + n_val]
        train += group[n_test + n_val :]
    return tuple(train), tuple(val), tuple(test)


# --------------------------------------------------------------------------- transforms and datasets


def default_preprocessing(
    size: int, *, mean: tuple[float, float, float] | None = None, std: tuple[float, float, float] | None = None
) -> Preprocessing:
    """Shorter side resized to ``size``, a centre ``size`` crop, then ``mean``/``std`` (ImageNet's when not given)."""
    norm = {key: tuple(value) for key, value in (("mean", mean), ("std", std)) if value is not None}
    return Preprocessing(resize=size, crop=size, **norm)


def eval_transform(pre: Preprocessing):
    import torch
    from torchvision.transforms import InterpolationMode, v2

    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(pre.resize, interpolation=InterpolationMode(pre.interpolation), antialias=True),
            v2.CenterCrop(pre.crop),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(pre.mean), list(pre.std)),
        ]
    )


AUGMENTATIONS = ("none", "light", "trivial", "randaugment")


def train_transform(pre: Preprocessing, *, augment: str = "light", hflip: bool = False):
    """Training-time transform: a random resized crop (except ``none``), optional horizontal flips, and for
    ``light`` a mild colour jitter, for ``trivial``/``randaugment`` torchvision's automatic augmentation."""
    import torch
    from torchvision.transforms import InterpolationMode, v2

    interpolation = InterpolationMode(pre.interpolation)
    steps: list = [v2.PILToTensor()]
    if augment == "none":
        steps += [v2.Resize(pre.resize, interpolation=interpolation, antialias=True), v2.CenterCrop(pre.crop)]
    else:
        steps.append(v2.RandomResizedCrop(pre.crop, scale=(0.7, 1.0), ratio=(0.85, 1.15), interpolation=interpolation))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    if augment == "light":
        steps.append(v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2))
    elif augment == "trivial":
        steps.append(v2.TrivialAugmentWide(interpolation=interpolation))
    elif augment == "randaugment":
        steps.append(v2.RandAugment(interpolation=interpolation))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(pre.mean), list(pre.std))]
    return v2.Compose(steps)


def open_rgb(path: Path, resize: int | None = None):
    """An image as 8-bit RGB exactly as the device runtime reads it (EXIF orientation applied; grey, palette,
    alpha, CMYK converted; 16-bit scaled; with ``resize``, a large JPEG decoded at reduced scale), or a
    :class:`DataError` naming it."""
    from edgetransfer.images import open_image

    return open_image(path, resize=resize)


class ImageDataset:
    """A torch-style map dataset over samples, applying ``transform`` to each RGB image (read as the runtime reads
    it for an input resized to ``resize``)."""

    def __init__(self, samples: tuple[Sample, ...], transform, resize: int | None = None) -> None:
        self.samples = samples
        self.transform = transform
        self.resize = resize

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        return self.transform(open_rgb(sample.path, self.resize)), sample.label


def batches(samples: tuple[Sample, ...], pre: Preprocessing, batch_size: int = 32):
    """Yield (float32 NCHW numpy batch, labels numpy), preprocessed by the device runtime's own code: the accuracy
    export and bench report, the calibration and the parity checks see exactly what a device app feeds the model
    (torchvision's evaluation transform differs by at most one uint8 level; tests/test_runtime.py)."""
    import numpy as np

    from edgetransfer.images import preprocess

    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        yield preprocess([s.path for s in chunk], pre), np.array([s.label for s in chunk])
