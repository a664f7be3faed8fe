"""Device and precision resolution shared by every stage (`base.device`, `base.precision`).

torch is imported when a runtime is resolved, not when this module is: stages that run no kernels never pay for it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import ParamsError

if TYPE_CHECKING:
    import torch


def cpu_has_fast_bf16() -> bool:
    """bf16 autocast pays off on CPUs with native bf16 (AVX-512 BF16 or AMX); on AVX2-only CPUs it
    is emulated and measured ~15x slower than fp32 for ResNet-18 training (AMD EPYC, 2 cores)."""
    import torch

    checks = [getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None)]
    return any(fn() for fn in checks if fn is not None)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None = plain fp32

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def hardware(self) -> str:
        """What ran the kernels, for a record's provenance: the GPU's name, or the CPU vector ISA torch dispatches
        to (AVX2 and AVX-512 machines run other kernels, so the same seed trains to other bits)."""
        import torch

        if self.device.type == "cuda":
            return f"cuda {torch.cuda.get_device_name(self.device)}"
        return f"cpu {torch.backends.cpu.get_cpu_capability()}"

    @property
    def describe(self) -> str:
        return f"{self.device.type}/{'fp32' if self.amp_dtype is None else str(self.amp_dtype).removeprefix('torch.')}"


def resolve_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ParamsError("base.device is 'cuda' but torch.cuda.is_available() is False; use 'auto' or 'cpu'")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    table = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision != "auto":
        if precision == "fp16" and dev.type == "cpu":
            raise ParamsError("base.precision 'fp16' is not supported on the CPU; use 'auto', 'fp32' or 'bf16'")
        return Runtime(dev, table[precision])
    if dev.type == "cuda":
        return Runtime(dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return Runtime(dev, torch.bfloat16 if cpu_has_fast_bf16() else None)
