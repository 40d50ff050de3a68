"""A camera-style loop: classify frames one at a time with edgetransfer.runtime (no torch), print each frame's
latency and the running p99.

    python examples/python/camera_loop.py MODEL SOURCE [--top-k 1] [--backend ort|openvino] [--repeat 3]

MODEL is a .onnx, an OpenVINO .xml or a run directory. SOURCE is a folder of images (played in name order,
``--repeat`` times) or one image, or with OpenCV installed (``pip install opencv-python-headless``) a video file
or a camera index such as ``0``. A frame's latency is preprocessing + inference; reading/decoding the frame is the
camera's part and is not counted.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgetransfer.errors import DataError, EdgeTransferError
from edgetransfer.runtime import IMAGE_SUFFIXES, Classifier, find_images, open_image


def folder_frames(folder: Path, repeat: int, resize: int) -> Iterator[tuple[str, np.ndarray]]:
    """(name, HxWx3 uint8 RGB) for every image in ``folder`` (or the one image it names), ``repeat`` times over; a
    large JPEG decoded at the reduced scale training used for an input resized to ``resize``."""
    files = find_images([folder])
    for _ in range(repeat):
        for path in files:
            try:  # one bad frame is said and passed over: a camera loop goes on
                frame = np.asarray(open_image(path, resize=resize))
            except DataError as exc:
                print(f"skipped: {exc}", file=sys.stderr)
                continue
            yield path.name, frame


def video_frames(source: str) -> Iterator[tuple[str, np.ndarray]]:
    """(frame number, HxWx3 uint8 RGB) from a video file or a camera index, with OpenCV."""
    stream = "://" in source or "!" in source  # an RTSP/HTTP URL or a GStreamer pipeline: OpenCV opens it
    if not source.isdigit() and not stream and not Path(source).exists():  # a typo: not a missing OpenCV
        raise SystemExit(f"error: no such folder, image, video file or camera: {source}")
    try:
        import cv2
    except ImportError:
        raise SystemExit("error: video files and cameras need OpenCV: pip install opencv-python-headless") from None
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise SystemExit(f"error: cannot open video source {source}")
    number = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            number += 1
            yield f"frame {number}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def positive(text: str) -> int:
    """A whole number of at least 1 (``--window 0`` kept no frame and the p99 was an IndexError)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .onnx, an OpenVINO .xml or a run directory")
    parser.add_argument("source", help="a folder of images, a video file or a camera index (OpenCV)")
    parser.add_argument("--top-k", type=positive, default=1, help="classes printed per frame")
    parser.add_argument("--backend", choices=("ort", "openvino"), help="default: openvino for .xml, else ort")
    parser.add_argument("--threads", type=positive, help="inference threads (default: all cores)")
    parser.add_argument("--repeat", type=positive, default=1, help="times a folder is played")
    parser.add_argument("--window", type=positive, default=300, help="frames the running p99 is taken over")
    args = parser.parse_args(argv)
    try:
        classifier = Classifier(args.model, backend=args.backend, threads=args.threads)
        source = Path(args.source)
        resize = classifier.preprocessing.resize
        still = source.is_dir() or (source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES)  # one image too
        frames = folder_frames(source, args.repeat, resize) if still else video_frames(args.source)
        recent: collections.deque[float] = collections.deque(maxlen=args.window)
        for name, frame in frames:
            started = time.perf_counter()
            best = classifier.predict([frame], top_k=args.top_k)[0]
            latency_ms = (time.perf_counter() - started) * 1e3
            recent.append(latency_ms)
            labels = "  ".join(f"{p.label} {p.score:.3f}" for p in best)
            p99 = np.percentile(np.fromiter(recent, float), 99)
            print(f"{name:<24} {latency_ms:7.2f} ms   p99 {p99:7.2f} ms ({len(recent)} frames)   {labels}", flush=True)
    except EdgeTransferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
