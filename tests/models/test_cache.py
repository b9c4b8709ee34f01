import os
from pathlib import Path

import pytest

from llmrec.models.cache import MANIFEST, check_entry, ensure_entry


def _build(tmp: Path) -> dict:
    (tmp / "weights.bin").write_bytes(b"\x01" * 1000)
    (tmp / "sub").mkdir()
    (tmp / "sub" / "config.json").write_text("{}")
    return {"kind": "test"}


def test_entry_is_built_once_then_reused(tmp_path):
    calls = []

    def build(tmp):
        calls.append(tmp)
        return _build(tmp)

    root, built = ensure_entry(tmp_path / "entry", build)
    assert built and check_entry(root) is None and (root / MANIFEST).exists()
    root, built = ensure_entry(tmp_path / "entry", build)
    assert not built and len(calls) == 1


@pytest.mark.parametrize(
    "damage",
    [
        lambda root: (root / MANIFEST).unlink(),
        lambda root: (root / "weights.bin").write_bytes(b"\x01" * 10),
        lambda root: (root / "weights.bin").write_bytes(b"\x01" * 999 + b"\x02"),
        lambda root: (root / "sub" / "config.json").unlink(),
        lambda root: (root / "extra.bin").write_bytes(b"x"),
    ],
    ids=["no-manifest", "truncated", "flipped-byte", "missing-file", "extra-file"],
)
def test_damaged_entry_is_detected_and_rebuilt(tmp_path, damage, capsys):
    root, _ = ensure_entry(tmp_path / "entry", _build)
    damage(root)
    assert check_entry(root) is not None
    root, built = ensure_entry(tmp_path / "entry", _build)
    assert built and check_entry(root) is None
    assert "invalid" in capsys.readouterr().err


def test_failed_build_leaves_nothing(tmp_path):
    def broken(tmp):
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        ensure_entry(tmp_path / "entry", broken)
    assert not (tmp_path / "entry").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
