"""A small, fast supervised training engine.

Images stay uint8 tensors on the device; each batch is converted, normalised and augmented with
batched tensor ops (pad-and-crop, horizontal flip), in channels_last and under the runtime's autocast.
No DataLoader and no per-sample Python in the hot loop.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from pipeline.config import require
from pipeline.device import Runtime
from pipeline.distributed import ONE_PROCESS, World, all_min, all_sum, broadcast_buffers, local_batch
from pipeline.errors import finite_loss
from pipeline.io.streamed import StreamedImages, WindowShuffle
from pipeline.models.inputs import Normalization, to_input


@dataclass(frozen=True)
class Recipe:
    """SGD + cosine annealing; the DCQ paper's CIFAR recipe is the default (appendix A.1)."""

    epochs: int = 200
    batch_size: int = 256
    lr: float = 0.1
    min_lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 2e-4
    nesterov: bool = False
    crop_padding: int = 4
    flip: bool = True
    label_smoothing: float = 0.0
    compile: bool = False  # torch.compile the training step (measured 1.6x for ConvNetD3 on a 2-core CPU)

    def __post_init__(self):
        require(self.epochs >= 1, f"epochs={self.epochs} must be >= 1")
        require(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1")
        require(self.lr > 0, f"lr={self.lr} must be > 0")
        require(0 <= self.min_lr <= self.lr, f"min_lr={self.min_lr} must be in [0, lr]")
        require(self.crop_padding >= 0, f"crop_padding={self.crop_padding} must be >= 0")


def augment(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random pad-and-crop (zero padding) and horizontal flip for a whole batch at once."""
    b, _, h, w = x.shape
    dev = x.device
    if padding:
        padded = F.pad(x, (padding,) * 4)
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(dev)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, :, None]
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, :]
        x = padded.permute(0, 2, 3, 1)[torch.arange(b, device=dev)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = (torch.rand(b, generator=generator) < 0.5).to(dev).view(b, 1, 1, 1)
        x = torch.where(mask, x.flip(3), x)
    return x.contiguous(memory_format=torch.channels_last)


def cosine_lr(step: int, total: int, lr: float, min_lr: float) -> float:
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * step / max(1, total)))


def train(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: Recipe,
    norm: Normalization,
    runtime: Runtime,
    seed: int,
    desc: str = "train",
    on_batch: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    total_steps: int | None = None,
    world: World = ONE_PROCESS,
    shuffle: WindowShuffle | None = None,
) -> list[dict]:
    """Train `model` in place on uint8 (N,H,W,3) `images`; returns per-epoch loss/accuracy history.

    The budget is `recipe.epochs` passes over `images`, or exactly `total_steps` optimizer steps when given
    (the last epoch then stops early; the cosine schedule spans the steps).

    `on_batch(epoch, sample_indices, logits)` sees every training forward pass (detached logits), for
    per-sample training dynamics (pruning scores); under torchrun, this rank's passes over its own rows (indices
    into `images`).

    With a `world` of several processes (torchrun), `images` are this rank's rows: each rank draws its own seeded
    order and augmentation, takes batch_size / world.size images per step, and DDP averages the gradients.

    `shuffle`: each epoch's order is window-shuffled (pipeline/io/streamed.py) instead of a uniform permutation;
    `images` may then be `StreamedImages`, which reads each window from its store as the order reaches it."""
    # one process: the same generator as always, so a plain run is what it was before DDP existed
    gen = torch.Generator().manual_seed(seed if world.size == 1 else seed + 1_000_003 * world.rank)
    model.to(runtime.device).to(memory_format=torch.channels_last).train()
    images = images.to(runtime.device)
    labels = labels.to(runtime.device)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
    )
    require(total_steps is None or total_steps >= 1, f"total_steps={total_steps} must be >= 1")
    n = len(images)
    # Full batches only (the remainder is a different subset every epoch): one input shape, so a compiled
    # step never recompiles, and no tiny last batch skews BatchNorm statistics.
    batch = min(recipe.batch_size, n) if world.size == 1 else local_batch(recipe.batch_size, world)
    steps_per_epoch = all_min(n // batch, world)  # every rank takes the same number of steps
    require(steps_per_epoch >= 1, f"{n} train images on this rank are fewer than one batch of {batch}")
    wrapped = model if world.size == 1 else DistributedDataParallel(
        model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    step_model = torch.compile(wrapped, dynamic=False) if recipe.compile else wrapped
    total = recipe.epochs * steps_per_epoch if total_steps is None else total_steps
    epochs = recipe.epochs if total_steps is None else -(-total_steps // steps_per_epoch)
    # fp16 autocast (asked for, or `auto` on a GPU without bf16) needs loss scaling: fp16 gradients underflow
    # where bf16's, with fp32's exponent range, do not. Disabled, the scaler passes every call straight through.
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    history = []
    step = 0
    bar = tqdm(total=total, desc=desc, unit="step", leave=False)
    for epoch in range(epochs):
        if shuffle is None:
            order = torch.randperm(n, generator=gen)
        else:
            order, windows = shuffle.order(n, gen)
            if isinstance(images, StreamedImages):
                images.follow(windows, shuffle.block)
        order = order.to(runtime.device)
        loss_sum, correct = 0.0, 0
        seen = 0
        for start in range(0, min(steps_per_epoch, total - step) * batch, batch):
            idx = order[start:start + batch]
            x = augment(to_input(images[idx], norm), recipe.crop_padding, recipe.flip, gen)
            y = labels[idx]
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, total, recipe.lr, recipe.min_lr)
            with runtime.autocast():
                try:
                    logits = step_model(x)
                except Exception as exc:  # compilation happens on the first call; no compiler -> eager
                    if step_model is wrapped or step > 0:
                        raise
                    warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); training eagerly")
                    step_model = wrapped
                    logits = wrapped(x)
                loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
            loss_value = finite_loss(float(loss.detach()), "train", step)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)  # skipped when a scaled gradient overflowed; the scale then halves
            scaler.update()
            if on_batch is not None:
                on_batch(epoch, idx, logits.detach().float())
            loss_sum += loss_value * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            step += 1
            bar.update(1)
        if world.size > 1:  # the epoch's numbers over every rank's batches (plain floats: the checkpoint loads safely)
            loss_sum, correct, seen = (float(v) for v in all_sum(np.array([loss_sum, correct, seen], np.float64), world))
        history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "train_accuracy": 100.0 * correct / seen}
                       | ({"loss_scale": scaler.get_scale()} if scaler.is_enabled() else {}))
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100.0 * correct / seen:.1f}")
    bar.close()
    broadcast_buffers(model, world)
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, norm: Normalization, runtime: Runtime, batch_size: int = 512) -> torch.Tensor:
    """Logits (float32, CPU) for uint8 (N,H,W,3) images."""
    model.to(runtime.device).to(memory_format=torch.channels_last).eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start:start + batch_size].to(runtime.device), norm)
        with runtime.autocast():
            out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, norm: Normalization, runtime: Runtime,
             batch_size: int = 512) -> float:
    logits = predict(model, images, norm, runtime, batch_size)
    return 100.0 * float((logits.argmax(1) == labels.cpu()).float().mean())


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, norm: Normalization, runtime: Runtime,
             num_classes: int, batch_size: int = 512, world: World = ONE_PROCESS) -> tuple[float, np.ndarray]:
    """Test accuracy (%) and the confusion matrix (rows: true class, columns: predicted; sklearn's convention).
    With several processes, `images` are this rank's test rows and the matrices are summed over ranks."""
    from sklearn.metrics import confusion_matrix

    logits = predict(model, images, norm, runtime, batch_size)
    truth = labels.cpu()
    confusion = confusion_matrix(truth.numpy(), logits.argmax(1).numpy(), labels=np.arange(num_classes))
    if world.size == 1:
        return 100.0 * float((logits.argmax(1) == truth).float().mean()), confusion
    confusion = all_sum(confusion.astype(np.int64), world)
    return 100.0 * float(np.trace(confusion)) / max(1, int(confusion.sum())), confusion
