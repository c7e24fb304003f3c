"""Load a pickle of NumPy arrays without letting it call anything else.

Unpickling calls whatever callables the file names, so a pickle from an untrusted source can
run arbitrary code. :class:`ArrayUnpickler` admits only the few globals that rebuild NumPy
arrays and plain containers; any other global (``os.system``, ``builtins.eval``, a class of
some library) raises :class:`ModelFileError` before it is called.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from fitting.models.model import ModelFileError

__all__ = ["ArrayUnpickler", "load_array_pickle"]

# (module, name) pairs a pickle of arrays legitimately needs; NumPy moved numpy.core to
# numpy._core in 2.0, and pickles name whichever module wrote them.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        # Pickle protocol 5 rebuilds arrays from a buffer with _frombuffer instead.
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
    }
)


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` admits only NumPy array reconstruction."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise ModelFileError(
                f"the pickle refers to {module}.{name}, which is not a NumPy array or a plain "
                "container; refusing to load it"
            )
        return super().find_class(module, name)


def load_array_pickle(path: str | Path) -> object:
    """Unpickle ``path`` with :class:`ArrayUnpickler`.

    Parameters
    ----------
    path : str or Path
        A pickle holding arrays in plain containers (e.g. a dict of arrays).

    Returns
    -------
    object
        The unpickled value. Object-dtype arrays are refused (their elements would be
        arbitrary Python objects).

    Raises
    ------
    ModelFileError
        When the file is missing, is not a pickle, or names any other global.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"file not found: {path}")
    with open(path, "rb") as handle:
        try:
            # latin1 lets Python 2 era NumPy pickles restore their byte buffers.
            value = ArrayUnpickler(handle, encoding="latin1").load()
        except ModelFileError as error:
            raise ModelFileError(f"{path}: {error}") from error
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                IndexError, KeyError) as error:
            raise ModelFileError(f"{path} is not a readable pickle ({error!r})") from error
    _refuse_object_arrays(value, path)
    return value


def _refuse_object_arrays(value: object, path: Path) -> None:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise ModelFileError(f"{path} holds an object-dtype array; refusing it")
    elif isinstance(value, dict):
        for item in value.values():
            _refuse_object_arrays(item, path)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _refuse_object_arrays(item, path)
