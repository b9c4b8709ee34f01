"""Where models run (``--device auto|cpu|cuda``) and in which precision (``auto|bfloat16|float32``).

``auto`` takes a CUDA GPU when torch sees one, else the CPU. Precision ``auto`` is bfloat16 where the device runs
it natively (a GPU that supports it; a CPU with AVX512-BF16 or AMX kernels) and float32 elsewhere: emulated
bfloat16 on a CPU without those kernels is several times slower than float32. CPU is the tested default.
"""

from __future__ import annotations

from pathlib import Path

from llmrec.errors import LlmrecError

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "bfloat16", "float32")
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def resolve_device(device: str = "auto") -> str:
    """``cpu`` or ``cuda`` for a device setting; ``cuda`` where torch sees no GPU is an error saying so.

    >>> resolve_device("cpu")
    'cpu'
    """
    if device not in DEVICES:
        raise LlmrecError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise LlmrecError(
            "device cuda was asked for but torch sees no CUDA GPU (this torch build or machine has none); "
            "use --device auto or cpu"
        )
    return "cpu"


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU advertises native bfloat16 matrix kernels (the Linux ``avx512_bf16`` or ``amx_bf16`` flag)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    return any(flag in flags for flag in _BF16_CPU_FLAGS)


def resolve_dtype(dtype: str = "auto", device: str = "cpu") -> str:
    """A precision setting as a dtype name on ``device`` (a resolved device, ``cpu`` or ``cuda``).

    >>> resolve_dtype("float32", "cpu")
    'float32'
    """
    if dtype not in DTYPES:
        raise LlmrecError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype != "auto":
        return dtype
    if device == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_has_native_bf16() else "float32"
