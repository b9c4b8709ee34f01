"""Device and precision settings: auto picks what torch sees, and a GPU that is not there is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llmrec.devices import cpu_has_native_bf16, resolve_device, resolve_dtype
from llmrec.errors import LlmrecError


def test_auto_is_the_cpu_where_torch_sees_no_gpu() -> None:
    assert not torch.cuda.is_available()  # the tests hide GPUs (CUDA_VISIBLE_DEVICES=)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(LlmrecError, match="torch sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(LlmrecError, match="unknown device 'tpu'"):
        resolve_device("tpu")


@pytest.mark.parametrize(
    ("flags", "native"),
    [("fpu sse avx2 avx512f", False), ("fpu avx512f avx512_bf16", True), ("fpu amx_tile amx_bf16", True)],
)
def test_cpu_bf16_comes_from_the_cpu_flags(flags: str, native: bool, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_has_native_bf16(cpuinfo) is native
    assert cpu_has_native_bf16(tmp_path / "missing") is False


def test_auto_precision_follows_the_cpu() -> None:
    expected = "bfloat16" if cpu_has_native_bf16() else "float32"
    assert resolve_dtype("auto", "cpu") == expected
    assert resolve_dtype("float32", "cpu") == "float32"
    with pytest.raises(LlmrecError, match="unknown dtype"):
        resolve_dtype("float8", "cpu")
