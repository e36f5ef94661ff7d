"""A checkpoint's named tensors, handed out once each so that gaps and leftovers are reported.

Families build their model by asking for keys; a key the architecture needs but the file lacks,
a tensor of the wrong rank, or a world-model key nothing asked for all become one-line errors
naming the checkpoint file, instead of silently rebuilding a different model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import yaml
from torch import Tensor

from beliefscope.errors import BadInputError


class Params:
    def __init__(self, tensors: Mapping[str, Tensor], path: Path, what: str) -> None:
        self.tensors = dict(tensors)
        self.path = path
        self.what = what  # e.g. "world-model key", used in messages
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.tensors

    def get(self, key: str, ndim: int | None = None) -> Tensor:
        if key not in self.tensors:
            raise BadInputError(f"missing {self.what} {key!r}", path=self.path)
        value = self.tensors[key]
        if ndim is not None and value.ndim != ndim:
            raise BadInputError(
                f"{self.what} {key!r} has shape {tuple(value.shape)}, expected {ndim} dims",
                path=self.path,
            )
        self.used.add(key)
        return value

    def optional(self, key: str) -> Tensor | None:
        return self.get(key) if key in self.tensors else None

    def affine(self, prefix: str) -> tuple[Tensor, Tensor]:
        """`prefix.weight` and `prefix.bias` (a linear layer or a norm's affine)."""
        return self.get(f"{prefix}.weight"), self.get(f"{prefix}.bias")

    def optional_affine(self, prefix: str) -> tuple[Tensor, Tensor] | None:
        return self.affine(prefix) if f"{prefix}.weight" in self.tensors else None

    def indices(self, pattern: str) -> list[int]:
        """Sorted integers `i` for which some key matches `pattern` (a regex with one group)."""
        regex = re.compile(pattern)
        found = {int(m.group(1)) for key in self.tensors if (m := regex.fullmatch(key))}
        return sorted(found)

    def count(self, pattern: str) -> int:
        """How many numbered layers match `pattern`; their numbers must run 0, 1, ..., n-1."""
        found = self.indices(pattern)
        if found != list(range(len(found))):
            message = f"{self.what}s {pattern!r} are numbered {found}, not 0..{len(found) - 1}"
            raise BadInputError(message, path=self.path)
        return len(found)

    def check_all_used(self) -> None:
        extra = sorted(set(self.tensors) - self.used)
        if extra:
            shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
            raise BadInputError(
                f"unexpected {self.what}s the rebuilt architecture does not use: {shown}",
                path=self.path,
            )


def as_tensors(arrays: Mapping[str, object], path: Path) -> dict[str, Tensor]:
    """numpy arrays (or tensors) -> float32 tensors; non-float entries are refused."""
    out = {}
    for key, value in arrays.items():
        tensor = value if isinstance(value, Tensor) else torch.as_tensor(value)
        if not tensor.is_floating_point():
            raise BadInputError(f"{key!r} is {tensor.dtype}, expected a float tensor", path=path)
        out[key] = tensor.detach().to(torch.float32)
    return out


def read_config(folders: Iterable[Path], names: Iterable[str]) -> tuple[dict, Path | None]:
    """The first config file found (YAML or JSON) in `folders`, parsed safely; {} if none."""
    for folder in folders:
        for name in names:
            path = folder / name
            if not path.is_file():
                continue
            try:
                text = path.read_text()
                data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (OSError, ValueError, yaml.YAMLError) as error:
                raise BadInputError(f"unreadable config file ({error})", path=path) from None
            if not isinstance(data, dict):
                raise BadInputError("config file does not hold a mapping", path=path)
            return data, path
    return {}, None


class Settings:
    """A run's config values, or the family's defaults; each default used is listed in `assumed`
    so the product can say what it could not read from the run."""

    def __init__(self, config: Mapping, path: Path) -> None:
        self.config, self.path = config, path
        self.assumed: list[str] = []

    def raw(self, key: str, default: object, *, record: bool = True) -> object:
        value = lookup(self.config, key, None)
        if value is not None:
            return value
        if record:
            self.assumed.append(f"{key}={default}")
        return default

    def number(self, key: str, default: float, *, record: bool = True) -> float:
        return float(self._scalar(key, self.raw(key, default, record=record)))

    def integer(self, key: str, default: int, *, record: bool = True) -> int:
        return int(self._scalar(key, self.raw(key, default, record=record)))

    def text(self, key: str, default: str, *, record: bool = True) -> str:
        return str(self._scalar(key, self.raw(key, default, record=record)))

    def flag(self, key: str, default: bool, *, record: bool = True) -> bool:
        return bool(self._scalar(key, self.raw(key, default, record=record)))

    def _scalar(self, key: str, value: object) -> float | int | str | bool:
        if not isinstance(value, float | int | str | bool):
            raise BadInputError(
                f"config {key} = {value!r} is not a number or string", path=self.path
            )
        return value


def lookup(config: Mapping, dotted: str, default: object) -> object:
    """`config["a"]["b"]` for "a.b", or `default` where any level is missing."""
    node: object = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node
