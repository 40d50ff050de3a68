"""The pieces the fine-tuning loop is made of: which parameters train in which phase, learning-rate groups and
schedule, mixed precision, and the distributed (torchrun) context."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetransfer.errors import UsageError

if TYPE_CHECKING:
    import torch

STRATEGIES = ("two-phase", "full", "partial", "linear-probe")
AMP_MODES = ("auto", "bf16", "fp16", "off")


def head_and_blocks(model: torch.nn.Module) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    """The classifier's Linear layer, and the body as an ordered list of blocks (input side first)."""
    import torch

    from edgetransfer.backbones import _classifier_path

    path = _classifier_path(model)
    head = model.get_submodule(path)
    if isinstance(getattr(model, "features", None), torch.nn.Sequential):
        # layers that learn between the features and the head are the body's last blocks: MobileNetV3's classifier.0
        # (a 960->1280 Linear, 29 % of v3-large's weights) was in neither and never trained, under --strategy full too
        parent = model.get_submodule(path.rsplit(".", 1)[0]) if "." in path else model
        between = [m for m in parent.children() if m is not head and any(True for _ in m.parameters())]
        return head, list(model.features.children()) + (between if parent is not model else [])
    blocks = []
    for _, child in model.named_children():
        if any(p is head.weight for p in child.parameters()) or child is head:
            continue
        if isinstance(child, torch.nn.Sequential):
            blocks += list(child.children())
        elif any(True for _ in child.parameters()):
            blocks.append(child)
    return head, blocks


def trainable_blocks(strategy: str, phase: str, blocks: list, unfreeze: int) -> list:
    """The body blocks that learn in ``phase`` ("head" or "body") of ``strategy``."""
    if strategy == "linear-probe" or (strategy == "two-phase" and phase == "head"):
        return []
    if strategy == "partial":
        return blocks[-unfreeze:] if unfreeze > 0 else []
    return blocks


FINE_TUNE_BN_MOMENTUM = 0.1  # PyTorch's default: the running statistics follow the last ~10 batches


def follow_data_quickly(model: torch.nn.Module) -> None:
    """BatchNorm running statistics that forget ImageNet's within a fine-tune's steps. EfficientNet-Lite's layers
    carry TensorFlow's momentum 0.01 (made for 350 epochs of ImageNet): after a fine-tune of 160 steps, 20 % of
    their statistics were still ImageNet's, and a Lite0 run on the digits scored 80 % where the same weights with
    statistics of its training images scored 96 %. A momentum of at least 0.1 leaves 0.9**50 < 1 % after 50 steps
    (a cumulative average, momentum None, is kept as it is)."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.momentum is not None:
            m.momentum = max(m.momentum, FINE_TUNE_BN_MOMENTUM)


def set_phase(model: torch.nn.Module, strategy: str, phase: str, unfreeze: int, fixed: int = 0) -> int:
    """Freeze what does not learn in this phase (frozen BatchNorm layers keep their statistics too); returns
    how many parameters will learn. ``fixed``: the body's first blocks that never learn (``--freeze-early``); their
    BatchNorm statistics still follow the data while the rest of the body trains, as they do when it all trains."""
    import torch

    head, blocks = head_and_blocks(model)
    learning = trainable_blocks(strategy, phase, blocks, unfreeze)
    following = {id(m) for block in learning for m in block.modules()}  # BatchNorm layers in training mode
    if learning and fixed:
        learning = [block for block in learning if not any(block is b for b in blocks[:fixed])]
    model.train()
    for p in model.parameters():
        p.requires_grad = False
    for module in [head, *learning]:
        for p in module.parameters():
            p.requires_grad = True
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and id(m) not in following:
            m.eval()
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def early_blocks(model: torch.nn.Module, size: int) -> int:
    """How many of the body's first blocks compute at full to quarter resolution (output stride 4 or less): the
    generic edge and texture filters, and the costliest part of a backward pass on a CPU. Found by one forward pass
    of a blank ``size`` x ``size`` image, so it holds for any backbone the registry builds."""
    import torch

    _, blocks = head_and_blocks(model)
    strides: dict[int, float] = {}

    def record(index: int):
        def hook(_module, _inputs, out) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                strides[index] = size / out.shape[-1]

        return hook

    hooks = [block.register_forward_hook(record(i)) for i, block in enumerate(blocks)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    count = 0
    while count < len(blocks) and strides.get(count, math.inf) <= 4:
        count += 1
    return min(count, len(blocks) - 1)  # never the whole body


def fixed_blocks(model: torch.nn.Module, config: Any, size: int) -> int:
    """How many of the body's first blocks ``config.freeze_early`` keeps fixed: the early blocks
    (:func:`early_blocks`) where the strategy would train them, else 0 (linear-probe, or partial with --unfreeze
    short of them: they are frozen anyway)."""
    if not config.freeze_early:
        return 0
    _, blocks = head_and_blocks(model)
    early = early_blocks(model, size)
    trained = trainable_blocks(config.strategy, "body", list(range(len(blocks))), config.unfreeze)
    return early if any(index < early for index in trained) else 0


def param_groups(model: torch.nn.Module, lr: float, body_lr_scale: float, weight_decay: float) -> list[dict]:
    """Discriminative learning rates: the head at ``lr``, the body at ``lr * body_lr_scale``; no weight decay on
    biases and normalisation parameters."""
    head, _ = head_and_blocks(model)
    head_ids = {id(p) for p in head.parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    for p in model.parameters():
        key = (id(p) in head_ids, p.ndim <= 1)
        groups.setdefault(key, []).append(p)
    return [
        {
            "params": params,
            "lr": lr if is_head else lr * body_lr_scale,
            "peak_lr": lr if is_head else lr * body_lr_scale,  # the loop sets lr = peak_lr * schedule each step
            "weight_decay": 0.0 if no_decay else weight_decay,
            "name": ("head" if is_head else "body") + ("/no-decay" if no_decay else ""),
        }
        for (is_head, no_decay), params in sorted(groups.items())
    ]


def warmup_cosine(total_steps: int, warmup_steps: int):
    """The learning-rate factor of a step: linear warm-up, then cosine decay to zero at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX): then bf16 autocast speeds up what runs
    forward only (a frozen body, evaluation); without them it is emulated and slower than float32."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:  # not Linux: ask oneDNN
        return bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def amp_dtype(mode: str, device: str, *, body_learns: bool = False) -> Any:
    """The autocast dtype for ``mode`` on ``device`` (None: full precision). ``auto``: bf16 on a GPU that has it
    (else fp16); on a CPU with native bf16 (AVX-512 BF16, AMX) bf16 for what only runs forward through the body
    (the head-only epochs) and float32 when any body block learns (``body_learns``): its backward pass ran
    no faster in bf16 on an AMD EPYC and slower on an Intel Xeon with AMX
    (benchmarks/results/finetune_recipes.md); full precision on other CPUs.
    ``bf16`` asks for bf16 throughout."""
    import torch

    if mode not in AMP_MODES:
        raise UsageError(f"unknown --amp {mode!r}; choose one of {', '.join(AMP_MODES)}")
    if mode == "off" or device not in ("cuda", "cpu"):
        return None
    if device == "cpu":  # fp16 autocast on a CPU is slow: bf16 or nothing
        return torch.bfloat16 if mode == "bf16" or (mode == "auto" and not body_learns and cpu_bf16()) else None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def validation_dtype(mode: str, device: str) -> Any:
    """The autocast dtype each epoch's validation runs in: on a CPU float32 unless ``--amp bf16`` asks for bf16
    throughout, because the exported model runs in float32 and the validation score chooses the epoch kept: on an
    AMD EPYC with AVX-512 BF16, bf16 scoring changed up to 12 of 100 validation predictions, and on one run the epoch
    kept (benchmarks/results/bf16_validation.md); on a GPU :func:`amp_dtype`'s."""
    dtype = amp_dtype(mode, device)
    return None if device == "cpu" and mode != "bf16" else dtype


def set_threads() -> int:
    """Intra-op threads: one per core this process may run on (OMP_NUM_THREADS, when set, decides)."""
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        from edgetransfer.machine import usable_cores

        torch.set_num_threads(max(1, usable_cores()))
    return torch.get_num_threads()


ALONE_THREADS = "EDGETRANSFER_ALONE_THREADS"  # set by --nproc-per-node's launcher: the cores its processes share


@contextlib.contextmanager
def threads_alone(dist: Distributed) -> Iterator[None]:
    """Process 0's work that the others wait for (validation each epoch, the test split, adaptation) on every core
    the job's processes share (the launcher's :data:`ALONE_THREADS`), not on its share of them: two CPU processes
    scored validation on 1 of 2 cores. The waiting processes take no CPU (a gloo barrier: 0.013 s of CPU in 5 s).
    Where the launcher did not choose the threads (``OMP_NUM_THREADS`` given, or torchrun itself), they stay."""
    import torch

    alone = os.environ.get(ALONE_THREADS, "")
    if not (dist.enabled and dist.main and alone.isdigit()):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(before, int(alone)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a ``torchrun`` job (a single process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
        return cls(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank."""
        if not self.enabled:
            return flag
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([1.0 if flag else 0.0])
        if dist.get_backend() == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def least(self, value: int) -> int:
        """The smallest of every rank's ``value``, on every rank (each rank times its own epochs, and rank 0's
        include validation: a plan each made alone would stop one rank an epoch before the others, which then wait
        on it in the next step's gradient exchange)."""
        if not self.enabled:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([float(value)])
        if dist.get_backend() == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return int(tensor.item())

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.destroy_process_group()


SKEW = 3  # largest class over smallest from which a set is skewed: sampled class-balanced by default


def skewed(counts) -> bool:
    """Whether class counts (a Counter or a mapping of counts) are skewed :data:`SKEW`:1 or more."""
    return bool(counts) and max(counts.values()) >= SKEW * min(counts.values())


def balanced_reason(samples: tuple, config) -> str | None:
    """Why training samples class-balanced (said at the start of the run), or None when it does not."""
    import collections

    counts = collections.Counter(s.label for s in samples)
    if not counts or config.balanced == "off":
        return None
    largest, smallest = max(counts.values()), min(counts.values())
    if config.balanced == "on":
        return "--balanced on"
    if skewed(counts):
        return (
            f"the training classes are skewed {largest / smallest:.0f}:1 (largest {largest}, smallest {smallest} "
            f"images) >= {SKEW}:1; --balanced off to sample them as they come"
        )
    return None


def sampler_for_epoch(samples: tuple, config, epoch: int, dist: Distributed):
    """Distributed, class-balanced or plain shuffling, seeded per epoch (so a resumed run sees the same order)."""
    import collections

    import torch

    counts = collections.Counter(s.label for s in samples)
    balanced = config.balanced == "on" or (config.balanced == "auto" and skewed(counts))
    generator = torch.Generator().manual_seed(config.seed + epoch)
    if dist.enabled and balanced:
        # one class-balanced draw, the same on every process (the same seed), each taking every world-th of it:
        # disjoint shares, as many as DistributedSampler gives each. Several processes trained plain shuffled,
        # --balanced on or a 3:1 skew unsaid (a review)
        from edgetransfer.finetune_config import per_process

        weights = torch.tensor([1.0 / counts[s.label] for s in samples], dtype=torch.float64)
        total = per_process(len(samples), dist.world) * dist.world
        order = torch.multinomial(weights, total, replacement=True, generator=generator).tolist()
        return order[dist.rank :: dist.world], "class-balanced"
    if dist.enabled:
        sampler = torch.utils.data.DistributedSampler(
            range(len(samples)), num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=config.seed
        )
        sampler.set_epoch(epoch)
        return sampler, "distributed"
    if balanced:
        weights = [1.0 / counts[s.label] for s in samples]
        return torch.utils.data.WeightedRandomSampler(weights, len(samples), generator=generator), "class-balanced"
    return torch.utils.data.RandomSampler(range(len(samples)), generator=generator), "shuffled"
