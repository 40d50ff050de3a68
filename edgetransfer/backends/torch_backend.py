"""PyTorch eager from the run's safetensors checkpoint: ``torch-cpu``, and ``torch-cuda`` on an NVIDIA GPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgetransfer.backends.base import Backend, LoadOptions, nvidia_gpu_count, register
from edgetransfer.rundir import CHECKPOINT


class _TorchSession:
    def __init__(self, model, device: str, *, half: bool = False, threads: int | None = None) -> None:
        self.model, self.device, self.half = model, device, half
        self.precision, self.threads = ("fp16" if half else "fp32"), threads

    def run(self, images):
        import torch

        with torch.inference_mode():
            batch = torch.from_numpy(images).to(self.device)
            return self.model(batch.half() if self.half else batch).float().cpu().numpy()


class TorchBackend(Backend):
    libraries = ("torch", "torchvision", "safetensors.torch", "edgetransfer.backbones")

    def __init__(self, device: str) -> None:
        self.device = device
        self.name = f"torch-{device}"
        self.needs_gpu = device == "cuda"
        # on the GPU, fp16 is the fp32 checkpoint cast to half precision
        self.variants = {"fp32": CHECKPOINT, "fp16": CHECKPOINT} if device == "cuda" else {"fp32": CHECKPOINT}
        self.install_hint = (
            "needs an NVIDIA GPU with its driver and a CUDA build of torch (https://pytorch.org/get-started)"
            if device == "cuda"
            else "pip install torch torchvision"
        )

    def is_available(self) -> bool:
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
            return False  # the runtime-only install: said with how to install it, not a failed measurement
        return self.device == "cpu" or nvidia_gpu_count() > 0

    def unavailable_reason(self) -> str:
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
            return "torch and torchvision are not installed"
        return "torch sees no CUDA GPU here"

    def load(self, path: Path, card, options: LoadOptions):
        import torch
        from safetensors.torch import load_file

        from edgetransfer import backbones

        if options.threads:
            torch.set_num_threads(options.threads)
        state = load_file(str(path))
        model, _ = backbones.build(card.backbone, card.num_classes, pretrained=False)
        classes = checkpoint_classes(model.state_dict(), state, card.num_classes)
        if classes != card.num_classes:  # a card of another model: load it, and the bench refuses it in one line
            model, _ = backbones.build(card.backbone, classes, pretrained=False)
        model.load_state_dict(state)
        half = options.variant == "fp16" and options.precision != "fp32"
        model = model.eval().to(self.device)
        return _TorchSession(model.half() if half else model, self.device, half=half, threads=torch.get_num_threads())


def checkpoint_classes(expected: dict, state: dict, classes: int) -> int:
    """The number of classes of a checkpoint ``state`` for a model whose state dict is ``expected`` with
    ``classes`` classes: ``classes``, unless only the first dimension of some tensors (the head's) differs."""
    wrong = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    sizes = {int(state[k].shape[0]) for k in wrong if state[k].ndim}
    if len(sizes) == 1 and all(tuple(state[k].shape[1:]) == tuple(expected[k].shape[1:]) for k in wrong):
        return sizes.pop()
    return classes


register(TorchBackend("cpu"))
register(TorchBackend("cuda"))
