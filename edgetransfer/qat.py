"""Quantization-aware fine-tuning: a short fine-tune with fake quantization from a run's best checkpoint on its
training images, written as a QDQ ONNX model that ONNX Runtime and OpenVINO both execute in int8.

NNCF's PyTorch QAT (``nncf.quantize`` on the torch model, then training the model it returns), with no dependency
beyond NNCF. BatchNorm is folded into the convolutions first (a BatchNorm left after a fake-quantized convolution
keeps the convolution in float). The ONNX file (``onnx_format="ort"``, the default): the trained weights, each snapped
to its NNCF weight quantizer's grid, in a plain float model that ONNX Runtime's static quantizer quantizes (u8
activations, s8 per-channel weights): every convolution a QLinearConv in ONNX Runtime and u8 in OpenVINO.
``onnx_format="nncf"`` writes NNCF's own QDQ export instead (``nncf.strip`` to PyTorch FakeQuantize), which
OpenVINO runs in int8 but ONNX Runtime mostly in float, several times slower than fp32
(``benchmarks/results/qat_trial.md``: 13 of MobileNetV2's 52 convolutions fused). PyTorch's pt2e was tried there too
(42 of 52, and two more dependencies).

Deterministic on the CPU: the image order, the augmentation and the initial ranges follow ``seed``. NNCF's fake
quantization runs on its pure-PyTorch reference functions, eagerly: left to itself NNCF compiles a C++ extension with
the machine's compiler on first use (a minute or more, and a 60 s timeout that failed on a busy machine).
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetransfer.data import Sample
from edgetransfer.errors import QuantizationError
from edgetransfer.rundir import RunDir, atomic_path


@dataclass(frozen=True)
class QatConfig:
    """How to fine-tune with fake quantization. The learning rate is small: the model has converged in float and
    only has to adapt to int8 rounding."""

    epochs: int = 1
    seed: int = 0
    lr: float = 5e-5
    batch_size: int = 32
    calibration_size: int = 200  # images NNCF sets the initial ranges from
    # the training's own recipe when None (the run's card): the fine-tune goes on from weights trained on images
    # augmented so; a different mix (no flip where the run flipped) shifts what the model sees for one epoch
    augment: str | None = None
    hflip: bool | None = None
    label_smoothing: float | None = None
    opset: int = 17
    max_images: int = 4000  # training images per epoch at most (about 2 minutes at 96 px on a 2-core CPU)
    # "ort": the trained weights quantized by ONNX Runtime's own static quantizer (u8 activations, s8 per-channel
    # weights), which it fuses into QLinearConv everywhere and OpenVINO runs in u8 too; "nncf": NNCF's own fake
    # quantizers written as QDQ (an OpenVINO file: ONNX Runtime leaves most convolutions in float)
    onnx_format: str = "ort"
    # the fp32 graph ONNX Runtime quantizes is simplified as export's fp32 model is (its --no-simplify, --atol)
    simplify: bool = True
    atol: float = 1e-3

    def validate(self) -> None:
        if not 1 <= self.epochs <= 100:
            raise QuantizationError(f"QAT epochs must be 1..100, not {self.epochs}")
        if not 0 < self.lr < 1:
            raise QuantizationError(f"QAT learning rate must be in (0, 1), not {self.lr}")
        if self.max_images < 1:
            raise QuantizationError(f"QAT needs at least one training image per epoch, not {self.max_images}")
        if self.onnx_format not in ("ort", "nncf"):
            raise QuantizationError(f"QAT's ONNX format is 'ort' or 'nncf', not {self.onnx_format!r}")
        if self.augment not in (None, "none", "light", "trivial", "randaugment"):
            raise QuantizationError(f"QAT's augmentation is none, light, trivial or randaugment, not {self.augment!r}")
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 1:
            raise QuantizationError(f"QAT's label smoothing must be in [0, 1), not {self.label_smoothing}")
        if not 1 <= self.batch_size <= 1024 or self.calibration_size < 1:
            raise QuantizationError("QAT batch size must be 1..1024 and the calibration size at least 1")


def fold_batchnorm(model: Any) -> Any:
    """BatchNorm folded into the convolution just before it, in place (the model goes to eval mode)."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for module in list(model.modules()):
        names = list(module._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                module._modules[first] = fuse_conv_bn_eval(conv, bn)
                module._modules[second] = torch.nn.Identity()
    return model


def _use_reference_functions() -> None:
    """NNCF's fake quantization in plain PyTorch ops instead of its just-in-time compiled C++ extension."""
    from nncf.torch.quantization import extensions
    from nncf.torch.quantization.reference import ReferenceQuantizedFunctions, torch_executor

    # eager, not torch.compile'd: NNCF compiles them per input shape with the machine's C++ compiler, gives up after
    # eight shapes with a screen of torch._dynamo warnings, and was no faster here
    for wrapper, function in (
        (ReferenceQuantizedFunctions.Quantize_forward, torch_executor.forward),
        (ReferenceQuantizedFunctions.Quantize_backward, torch_executor.backward),
    ):
        if hasattr(wrapper, "_compiled_func"):
            wrapper._compiled_func = function
    namespace = getattr(extensions, "QuantizedFunctionsCPU", None)
    if namespace is not None and getattr(namespace, "_loaded_namespace", "missing") is None:
        namespace._loaded_namespace = ReferenceQuantizedFunctions


def with_runs_recipe(config: QatConfig, card: Any) -> QatConfig:
    """``config`` with what it leaves open (None) taken from the run's training recipe (its card); a run whose card
    has no recipe (made before it was recorded): light augmentation, no flip, no label smoothing."""
    import dataclasses

    recipe = (card.training or {}).get("config") or {}
    fallback = {"augment": "light", "hflip": False, "label_smoothing": 0.0}
    filled = {
        key: recipe.get(key, default) if getattr(config, key) is None else getattr(config, key)
        for key, default in fallback.items()
    }
    return dataclasses.replace(config, **filled)


def _batches(samples: Sequence[Sample], pre: Any, config: QatConfig, epoch: int):
    """One epoch of seeded, shuffled, augmented (image tensor, label tensor) batches."""
    import torch

    from edgetransfer.data import ImageDataset, train_transform

    torch.manual_seed(config.seed * 10_000 + epoch)  # the augmentation's random draws
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(config.seed + epoch)).tolist()
    transform = train_transform(pre, augment=config.augment, hflip=config.hflip)
    dataset = ImageDataset(tuple(samples[i] for i in order), transform, pre.resize)
    for start in range(0, len(dataset), config.batch_size):
        items = [dataset[i] for i in range(start, min(start + config.batch_size, len(dataset)))]
        yield torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def _overflow_fix(config: Any) -> Any:
    """NNCF's overflow fix for ``config``'s weight bits: every weight in 7 bits, else NNCF's default (the first
    layer only)."""
    from nncf.quantization.advanced_parameters import OverflowFix

    bits = config.weight_bits() if config is not None else 8
    return OverflowFix.ENABLE if bits == 7 else OverflowFix.FIRST_LAYER


def qat_to_onnx(
    run: RunDir | Path | str,
    train: Sequence[Sample],
    out: Path | str,
    config: QatConfig = QatConfig(),
    *,
    ort_config: Any = None,
    ort_calibration: Any = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Fine-tune ``run``'s best checkpoint with fake quantization on ``train`` and write the int8 QDQ ONNX model to
    ``out`` (only when everything succeeded); returns a record (epochs' losses, seconds, settings).

    Raises:
        QuantizationError: no training images, a bad config, a diverged loss or NNCF failing.
        RunDirError: the run's checkpoint is missing, changed, or does not fit its card's backbone.
    """
    import random

    import numpy as np
    import torch

    from edgetransfer.telemetry import import_nncf, nncf_progress

    nncf = import_nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    from edgetransfer.checkpoint import load_model
    from edgetransfer.evaluation import decoded
    from edgetransfer.onnx_convert import torch_to_onnx

    config.validate()
    if not train:
        raise QuantizationError("QAT needs the run's training images, and there are none")
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    card = run.load_card()
    pre = card.preprocessing
    config = with_runs_recipe(config, card)
    config.validate()
    model = fold_batchnorm(load_model(run, card))
    plain = copy.deepcopy(model)  # receives the trained weights for the ONNX Runtime format
    say = progress or (lambda line: None)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    chosen = list(train)
    random.Random(config.seed).shuffle(chosen)
    calibration = decoded(tuple(chosen[: config.calibration_size]), pre)
    if len(train) > config.max_images:  # a seeded subset: QAT adapts a converged model, it does not train one
        train = tuple(chosen[: config.max_images])
    items = [torch.from_numpy(calibration.images[i : i + 1]) for i in range(len(calibration))]
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    nncf.set_log_level(logging.ERROR)
    _use_reference_functions()
    started = time.perf_counter()
    try:
        # no bias correction: the fine-tune that follows corrects the biases itself (and it halves the set-up time)
        with nncf_progress():  # NNCF's progress bars are not results (stdout is export's list)
            quantized = nncf.quantize(
                model,
                nncf.Dataset(items),
                subset_size=len(items),
                advanced_parameters=AdvancedQuantizationParameters(
                    disable_bias_correction=True, overflow_fix=_overflow_fix(ort_config)
                ),
            )
    except Exception as exc:  # noqa: BLE001 - NNCF raises a wide variety; one line for the user
        raise QuantizationError(f"NNCF could not insert fake quantization: {str(exc).splitlines()[0]}") from None
    optimizer = torch.optim.AdamW(quantized.parameters(), lr=config.lr, weight_decay=0.0)
    losses = []
    for epoch in range(config.epochs):
        total, count, epoch_start = 0.0, 0, time.perf_counter()
        for images, labels in _batches(train, pre, config, epoch):
            loss = torch.nn.functional.cross_entropy(quantized(images), labels, label_smoothing=config.label_smoothing)
            if not torch.isfinite(loss):
                raise QuantizationError(f"QAT diverged in epoch {epoch + 1} (loss {loss.item()}); try a smaller lr")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()) * len(labels), count + len(labels)
        losses.append(total / count)
        seconds = time.perf_counter() - epoch_start
        rate = count / seconds  # 3 figures: a slow epoch (0.17 img/s) read "0 img/s"
        say(f"QAT epoch {epoch + 1}/{config.epochs}  loss {losses[-1]:.4f}  {rate:.3g} img/s ({seconds:.0f} s)")
    quantized.eval()
    if config.onnx_format == "nncf":
        stripped = nncf.strip(quantized, example_input=items[0], strip_format=nncf.StripFormat.NATIVE)
        with atomic_path(Path(out)) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch_to_onnx(stripped, pre.crop, tmp, config.opset)
    else:
        try:
            snapped = _requantize_for_ort(
                quantized, plain, ort_calibration or calibration, pre, Path(out), config, ort_config
            )
            slim = {k: snapped.pop(k) for k in ("simplified", "not_simplified_because") if k in snapped}
        except (RuntimeError, ValueError, AttributeError, KeyError, TypeError) as exc:
            raise QuantizationError(f"QAT's model could not be written for ONNX Runtime: {exc}") from None
    return {
        "method": "qat-nncf" if config.onnx_format == "nncf" else "qat-nncf, ONNX Runtime QDQ",
        "onnx_format": config.onnx_format,
        **({"snapped_weights": snapped} if config.onnx_format == "ort" else {}),
        **(slim if config.onnx_format == "ort" else {}),  # its fp32 graph simplified before quantizing, or why not
        "nncf": nncf.__version__,
        "epochs": config.epochs,
        "seed": config.seed,
        "lr": config.lr,
        "augment": config.augment,
        "hflip": config.hflip,
        "label_smoothing": config.label_smoothing,
        "losses": [round(v, 6) for v in losses],
        "calibration_images": len(items),
        "train_images": len(train),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _requantize_for_ort(
    quantized: Any, plain: Any, calibration: Any, pre: Any, out: Path, config: QatConfig, ort_config: Any
) -> dict:
    """The QAT-trained weights, each snapped to its NNCF weight quantizer's grid, in a plain float model; that model
    exported and quantized by ONNX Runtime's static quantizer (calibrated on the same images) to ``out``. Its
    activation ranges are ONNX Runtime's min-max, not NNCF's learned ones: the weights carry what the fine-tune
    learned about int8 rounding, and the file has ONNX Runtime's all-int8 layout."""
    import tempfile

    import torch

    from edgetransfer.onnx_convert import torch_to_onnx
    from edgetransfer.quantize import Int8Config, prepare, quantize_static

    wanted = plain.state_dict()
    trained = quantized.state_dict()
    missing = [key for key in wanted if key not in trained]
    if missing:
        raise QuantizationError(f"QAT's model lost parameters on the way ({missing[0]}); use the 'nncf' ONNX format")
    with torch.no_grad():
        plain.load_state_dict({key: trained[key] for key in wanted})
        snapped, steps = _snap_weights(quantized, plain)
    plain.eval()
    settings = ort_config or Int8Config()
    # ONNX Runtime's own per-channel scale (max |w| / 127) would round the snapped weights a second time wherever
    # NNCF's learned range is wider than the channel's largest weight: give it NNCF's steps (per-channel only)
    grid = steps if settings.per_channel else None
    with tempfile.TemporaryDirectory(prefix="edgetransfer-qat-") as tmp, atomic_path(out) as target:
        fp32, prepared = Path(tmp) / "qat.fp32.onnx", Path(tmp) / "qat.prepared.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch_to_onnx(plain, pre.crop, fp32, config.opset)
        slim = _slimmed(fp32, calibration, grid, atol=config.atol) if config.simplify else "export's --no-simplify"
        prepare(fp32, prepared)
        quantize_static(prepared, target, calibration, pre, settings, weight_steps=grid)
    own = "ONNX Runtime's own per-channel scales" if settings.per_channel else "ONNX Runtime's own per-tensor scale"
    kept = {"simplified": True} if slim is True else {"simplified": False, "not_simplified_because": slim}
    return {"weights": snapped, "grid": "NNCF's steps" if grid else own, **kept}


def _slimmed(fp32: Path, calibration: Any, grid: dict[str, Any] | None, *, atol: float = 1e-3) -> bool | str:
    """``fp32`` simplified in place with onnxslim, as export's fp32 model is, where its logits stay within ``atol``
    (export's --atol) of the plain export's on up to 64 of ``calibration``'s images and every weight of ``grid`` the
    plain export holds keeps its name; True, or why the plain export was kept (also said on the console). Without
    it, EfficientNet-Lite's explicit Pad layers (TensorFlow's 'same' padding) stayed between a DequantizeLinear and a
    QuantizeLinear of their own, in float: a new user's QAT Lite0 model ran at 0.79-0.83x fp32's latency in ONNX
    Runtime against 0.61x for post-training int8 (whose fp32 model, simplified, has the Pad folded into its
    convolution)."""
    import onnx

    from edgetransfer import console
    from edgetransfer.backends.ort import _OrtSession, ort_session
    from edgetransfer.evaluation import parity
    from edgetransfer.onnx_convert import simplified_if

    def names(path: Path) -> set[str]:
        return {init.name for init in onnx.load(str(path)).graph.initializer}

    def judge(plain: Path) -> str | None:
        lost = sorted((names(plain) & set(grid or ())) - names(fp32))
        if lost:
            return f"onnxslim renamed weight {lost[0]}"
        sessions = (_OrtSession(ort_session(path), "fp32") for path in (plain, fp32))
        moved = parity(*sessions, calibration.spread(64))["max_abs_diff"]
        return f"onnxslim moved the logits by {moved:.3g} (over --atol {atol:g})" if moved > atol else None

    why, _ = simplified_if(fp32, judge)
    if why:
        console.err.print(f"[yellow]note: QAT's graph not simplified: {why}; plain export kept[/]")
    return why or True


def _snap_weights(quantized: Any, plain: Any) -> tuple[int, dict[str, Any]]:
    """Each weight NNCF fake-quantized during training replaced, in ``plain``, by its quantized-dequantized value
    (what the network was trained to work with). Returns how many, and each weight's int8 step per output channel
    (by its name in ``plain``, as the exported ONNX model names it) where its quantizer is symmetric."""
    from nncf.torch.function_hook.hook_storage import decode_hook_name
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.quantization.layers import BaseQuantizer, SymmetricQuantizer

    modules = dict(plain.named_modules())
    snapped, weight_quantizers, steps = 0, 0, {}
    for name, hook in get_hook_storage(quantized).named_hooks():
        if not isinstance(hook, BaseQuantizer):
            continue
        hook_type, op_name, port = decode_hook_name(name)
        # a weight quantizer is a pre-hook on a convolution's or linear layer's port 1: "features/0/0/conv2d/0"
        module = modules.get(".".join(op_name.split("/")[:-2]))
        kind = op_name.split("/")[-2] if op_name.count("/") >= 2 else ""
        if hook_type != "pre_hooks" or port != 1 or kind not in ("conv2d", "linear"):
            continue
        weight_quantizers += 1
        if module is None or not hasattr(module, "weight"):
            continue
        hook.eval()
        module.weight.copy_(hook.quantize(module.weight.detach().clone()))
        snapped += 1
        if isinstance(hook, SymmetricQuantizer):  # zero point 0: the grid is its step, (high - low) / (levels - 1)
            low, high = hook.get_input_low_input_high()
            step = ((high - low) / (hook.levels - 1)).detach().reshape(-1).numpy()
            steps[".".join(op_name.split("/")[:-2]) + ".weight"] = step
    if snapped != weight_quantizers or not snapped:  # NNCF's hook naming changed: say so, never skip it silently
        raise QuantizationError(
            f"QAT: {snapped} of {weight_quantizers} quantized weights could be found in the model (nncf "
            "version?); use onnx_format='nncf'"
        )
    return snapped, steps
