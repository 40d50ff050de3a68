"""Images decoded once for training: the runtime's pixels, huge JPEGs within memory, streaming past the cache,
whole-batch augmentation, and bf16 only where the CPU has it."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_folder
from PIL import Image

from edgetransfer.data import default_preprocessing, load_splits
from edgetransfer.decoded import MAX_DECODE_THREADS, Decoded, augment, decode, decode_threads, normalize
from edgetransfer.images import preprocess_image
from edgetransfer.machine import usable_cores


def test_decoded_images_are_what_the_runtime_feeds_the_model(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(path)
    pre = default_preprocessing(32)
    ours = normalize(torch.from_numpy(decode(path, pre)).permute(2, 0, 1)[None], pre)[0]
    assert np.allclose(ours.numpy(), preprocess_image(path, pre), atol=1e-5)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak memory from /proc (Linux)")
def test_a_huge_jpeg_decodes_within_memory(tmp_path):
    """A 6000x4000 photo is 72 MB decoded; draft mode reads it at 1/8 scale: the peak memory (VmHWM, Linux) stays
    far lower."""
    path = tmp_path / "huge.jpg"
    pixels = np.zeros((4000, 6000, 3), np.uint8)
    pixels[::50] = 200
    Image.fromarray(pixels).save(path, quality=80)
    del pixels
    probe = (
        "import sys\n"
        "from edgetransfer.card import Preprocessing\n"
        "from edgetransfer.decoded import decode\n"
        "from PIL import Image\n"
        "peak = lambda: int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
        "before = peak()\n"
        "if sys.argv[2] == 'ours':\n"
        "    assert decode(sys.argv[1], Preprocessing(resize=96, crop=96)).shape == (96, 96, 3)\n"
        "else:\n"
        "    Image.open(sys.argv[1]).load()\n"
        "print((peak() - before) // 1024)\n"
    )
    grown = {
        how: int(
            subprocess.run(
                [sys.executable, "-c", probe, str(path), how], capture_output=True, text=True, check=True
            ).stdout
        )
        for how in ("ours", "full")
    }
    assert grown["full"] >= 60 and grown["ours"] < 20, grown  # MB


def test_past_the_cache_bound_images_stream_with_a_note(tmp_path, capsys):
    splits = load_splits(make_folder(tmp_path / "d", per_class=4, classes=2))
    pre = default_preprocessing(32)
    cached, streamed = Decoded(splits.train, pre), Decoded(splits.train, pre, name="training images", limit_mb=0)
    assert cached.cached and not streamed.cached and streamed.pixels is None
    said = " ".join(capsys.readouterr().err.split())  # (it said "0 MB decoded exceed the 0 MB cache")
    assert "are not kept in memory (EDGETRANSFER_CACHE_MB=0): decoded from their files each time they are read" in said
    assert torch.equal(cached.uint8([0, 2]), streamed.uint8([0, 2]))
    threaded = Decoded(splits.train, pre, limit_mb=0, workers=2)  # --workers: decoding threads
    assert torch.equal(threaded.uint8([0, 1, 2]), cached.uint8([0, 1, 2]))
    one = Decoded(splits.train, pre, workers=0)  # --workers 0: the calling thread, the same pixels
    assert one.workers == 0 and np.array_equal(one.pixels, cached.pixels)
    assert cached.workers == decode_threads() == min(MAX_DECODE_THREADS, usable_cores())  # the default
    assert cached.uint8([0, 1]).is_contiguous(memory_format=torch.channels_last)


def test_batch_augmentation_flips_some_images_and_crops_others():
    torch.manual_seed(0)
    pre = default_preprocessing(32)
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    flipped = augment(images, pre, kind="none", hflip=True)
    plain, mirrored = normalize(images, pre), normalize(images.flip(3), pre)
    same = [torch.allclose(flipped[i], plain[i], atol=1e-4) for i in range(32)]
    flip = [torch.allclose(flipped[i], mirrored[i], atol=1e-4) for i in range(32)]
    assert all(a or b for a, b in zip(same, flip, strict=True)) and 4 < sum(flip) < 28
    assert not any(torch.allclose(a, b, atol=1e-4) for a, b in zip(augment(images, pre), plain, strict=True))
    light = augment(images, pre, kind="light")
    assert light.shape == (32, 3, 32, 32) and light.is_contiguous(memory_format=torch.channels_last)


def test_bf16_autocast_only_where_the_cpu_computes_it(monkeypatch):
    from edgetransfer import training

    monkeypatch.setattr(training, "cpu_bf16", lambda: True)
    assert training.amp_dtype("auto", "cpu") == torch.bfloat16 and training.amp_dtype("off", "cpu") is None
    # the whole network's backward pass ran slower in bf16 on the CPUs measured: auto trains the body in float32
    assert training.amp_dtype("auto", "cpu", body_learns=True) is None
    assert training.amp_dtype("bf16", "cpu", body_learns=True) == torch.bfloat16
    monkeypatch.setattr(training, "cpu_bf16", lambda: False)
    assert training.amp_dtype("auto", "cpu") is None and training.amp_dtype("fp16", "cpu") is None
    assert training.amp_dtype("bf16", "cpu") == torch.bfloat16


def test_validation_runs_in_float32_on_a_cpu_unless_bf16_is_asked_for_throughout(monkeypatch):
    from edgetransfer import training

    monkeypatch.setattr(training, "cpu_bf16", lambda: True)  # where auto trains the head in bf16
    assert training.validation_dtype("auto", "cpu") is None and training.validation_dtype("off", "cpu") is None
    assert training.validation_dtype("bf16", "cpu") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert training.validation_dtype("auto", "cuda") == torch.float16  # a GPU's autocast, as it trains


def test_the_cache_size_from_the_environment_is_checked(monkeypatch):
    """EDGETRANSFER_CACHE_MB=2G was a ValueError traceback when edgetransfer was imported (a reviewer's finding)."""
    from edgetransfer.decoded import CACHE_LIMIT_MB, cache_limit_mb
    from edgetransfer.errors import UsageError

    monkeypatch.delenv("EDGETRANSFER_CACHE_MB", raising=False)
    assert cache_limit_mb() == CACHE_LIMIT_MB
    monkeypatch.setenv("EDGETRANSFER_CACHE_MB", " 512 ")
    assert cache_limit_mb() == 512
    for bad in ("2G", "-1", "1.5"):
        monkeypatch.setenv("EDGETRANSFER_CACHE_MB", bad)
        with pytest.raises(UsageError, match=f"EDGETRANSFER_CACHE_MB='{bad}': give the decoded-image cache's size"):
            cache_limit_mb()
