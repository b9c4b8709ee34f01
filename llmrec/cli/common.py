"""What every command group shares: the ``--json`` contract, argument types, reading a YAML config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from llmrec.errors import LlmrecError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line of stdout.")]
DatasetArg = Annotated[str, typer.Argument(help="A builtin dataset name (ml-100k) or a dataset directory.")]
DeviceOption = Annotated[str | None, typer.Option(help="auto (a CUDA GPU when there is one), cpu or cuda.")]


def emit_json(payload: dict[str, Any]) -> None:
    """Print ``payload`` as one JSON line on stdout."""
    print(json.dumps(payload, default=str))


def echo(text: str = "") -> None:
    """Print a line of human output on stdout."""
    print(text)


def group(help_text: str) -> typer.Typer:
    """A command group (``llmrec data``, ``llmrec encoder``, ...) that shows its help when called bare."""
    return typer.Typer(help=help_text, no_args_is_help=True)


def read_yaml(path: Path, sections: tuple[str, ...]) -> dict[str, Any]:
    """A YAML config file holding a mapping with (some of) ``sections``; a bad file is one clear error."""
    import yaml

    if not path.exists():
        raise LlmrecError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise LlmrecError(f"{where}: not valid YAML; fix the file") from None
    if not isinstance(values, dict) or set(values) - set(sections):
        raise LlmrecError(f"{path}: expected a mapping with sections {', '.join(sections)}")
    return values


def parse_settings(pairs: list[str] | None, option: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (values read as YAML: numbers, booleans, lists) as a dict.

    >>> parse_settings(["max_steps=50", "bf16=true", "lr_scheduler_type=linear"], "--trainer")
    {'max_steps': 50, 'bf16': True, 'lr_scheduler_type': 'linear'}
    """
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise LlmrecError(f"{option} {pair!r}: give KEY=VALUE, e.g. {option} max_steps=50")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise LlmrecError(f"{option} {pair!r}: the value is not valid YAML") from None
    return out
