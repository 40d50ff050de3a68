"""PyTorch eager on the CPU, from the run's safetensors checkpoint."""

from __future__ import annotations

from pathlib import Path

from edgetransfer.backends.base import Backend, LoadOptions, register
from edgetransfer.rundir import CHECKPOINT


class _TorchSession:
    def __init__(self, model, device: str) -> None:
        self.model, self.device, self.precision = model, device, "fp32"

    def run(self, images):
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(images).to(self.device)).float().cpu().numpy()


class TorchBackend(Backend):
    def __init__(self, device: str) -> None:
        self.device = device
        self.name = f"torch-{device}"
        self.variants = {"fp32": CHECKPOINT}
        self.install_hint = "needs an NVIDIA GPU and a CUDA build of torch" if device == "cuda" else ""

    def is_available(self) -> bool:
        import torch

        return self.device == "cpu" or torch.cuda.is_available()

    def load(self, path: Path, card, options: LoadOptions):
        import torch
        from safetensors.torch import load_file

        from edgetransfer import backbones

        if options.threads:
            torch.set_num_threads(options.threads)
        model, _ = backbones.build(card.backbone, card.num_classes, pretrained=False)
        model.load_state_dict(load_file(str(path)))
        return _TorchSession(model.eval().to(self.device), self.device)


register(TorchBackend("cpu"))
register(TorchBackend("cuda"))
