"""Read pickles holding only numpy arrays and plain containers; refuse everything else.

The same idea as `torch.load(weights_only=True)`: a pickle may name any importable callable,
so the unpickler resolves only the few globals that numpy's array reconstruction needs. A
pickle asking for anything else is refused before that global is even imported. Nor may it
make numpy allocate what the file does not hold: numpy's own pickles build an array empty
(`_reconstruct(ndarray, (0,), ...)`) and fill it from bytes in the file, so a `_reconstruct`
of any other shape (a 120-byte pickle asking for 8 GiB) is refused before it allocates.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np

from beliefscope.errors import BadInputError

_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),  # arrays under pickle protocol 5
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # how protocol-2 pickles spell bytes
    }
)


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path) -> None:  # noqa: ANN001 (a binary file object)
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> object:
        canonical = module.replace("numpy.core.", "numpy._core.", 1)
        if (canonical, name) not in _ALLOWED:
            raise BadInputError(
                f"pickle asks for global {module}.{name}, which is not allowed "
                "(only numpy arrays and plain containers are read)",
                path=self.path,
            )
        if canonical.startswith("numpy._core.") and not hasattr(np, "_core"):
            canonical = module  # numpy 1.x
        found = super().find_class(canonical, name)
        if name == "_reconstruct":
            return self._empty_only(found)
        return found

    def _empty_only(self, reconstruct: Callable[..., object]) -> Callable[..., object]:
        def guarded(cls: object, shape: object, *rest: object) -> object:
            size = shape if isinstance(shape, int) else None
            if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
                size = math.prod(shape)
            if size != 0:
                raise BadInputError(
                    f"pickle builds an array of shape {shape!r} before its data (numpy's own "
                    "pickles start empty); refused before allocating it",
                    path=self.path,
                )
            return reconstruct(cls, shape, *rest)

        return guarded

    def persistent_load(self, pid: object) -> object:
        raise BadInputError("pickle uses persistent ids, which are not allowed", path=self.path)


def load(path: Path) -> object:
    """Unpickle `path`, admitting only arrays, numbers, strings and containers."""
    try:
        with open(path, "rb") as file:
            return _ArrayUnpickler(file, path).load()
    except BadInputError:
        raise
    except OSError as error:
        raise BadInputError(f"cannot read: {error.strerror or error}", path=path) from None
    except Exception as error:  # a truncated or corrupt pickle raises many kinds
        message = f"not a readable pickle ({type(error).__name__}: {error})"
        raise BadInputError(message, path=path) from None
