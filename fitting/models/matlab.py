"""Read MATLAB ``.mat`` files (v5 and v7.3) into a flat dictionary of numeric arrays.

MATLAB writes two container formats: v5 (read with :func:`scipy.io.loadmat`) and v7.3, which
is HDF5 behind a 512-byte user block (read with ``h5py``, an optional dependency). The file's
own bytes decide which reader runs, not its name.

Arrays come back with MATLAB's dimension order in both cases: a ``(3N, 1)`` MATLAB column is
``(3N, 1)`` here. HDF5 stores MATLAB's column-major arrays with the axes reversed, so the v7.3
reader transposes every array back. Struct fields are flattened into dotted names
(``BFM.shapeMU``); cell arrays, strings and other non-numeric values are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from fitting.models.model import ModelFileError

__all__ = ["read_mat", "is_hdf5"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# MATLAB classes that hold plain numbers (v7.3 stores them in the MATLAB_class attribute).
_NUMERIC_CLASSES = {
    "double", "single", "logical",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
}


def read_mat(path: str | Path) -> dict[str, np.ndarray]:
    """Read the numeric arrays of a MATLAB ``.mat`` file, v5 or v7.3.

    Parameters
    ----------
    path : str or Path
        The ``.mat`` file.

    Returns
    -------
    arrays : dict of str to ndarray
        Variable name (``struct.field`` for struct fields) to array, in MATLAB's dimension
        order (at least 2-D, as MATLAB stores them).

    Raises
    ------
    ModelFileError
        When the file is missing or is not a readable MAT-file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"file not found: {path}")
    if is_hdf5(path):
        return _read_v73(path)
    return _read_v5(path)


def is_hdf5(path: str | Path) -> bool:
    """Whether ``path`` holds an HDF5 file, with or without a user block in front.

    The HDF5 superblock sits at byte 0 or, behind a user block, at 512, 1024, 2048, ...
    (MATLAB v7.3 uses 512).
    """
    path = Path(path)
    size = path.stat().st_size
    offset = 0
    with open(path, "rb") as handle:
        while offset + len(HDF5_SIGNATURE) <= size:
            handle.seek(offset)
            if handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def _read_v5(path: Path) -> dict[str, np.ndarray]:
    try:
        raw = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    except (scipy.io.matlab.MatReadError, ValueError, TypeError, OSError, EOFError) as error:
        raise ModelFileError(f"{path} is not a readable MATLAB .mat file ({error})") from error
    arrays: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        if not name.startswith("__"):
            _collect_v5(name, value, arrays)
    return arrays


def _collect_v5(name: str, value, arrays: dict[str, np.ndarray]) -> None:
    if not isinstance(value, np.ndarray):
        return
    if value.dtype.names is not None:
        # A MATLAB struct: keep only scalar structs, the only kind the model files use.
        if value.size == 1:
            record = value.reshape(-1)[0]
            for field in value.dtype.names:
                _collect_v5(f"{name}.{field}", record[field], arrays)
        return
    if value.dtype.kind in "biuf":
        arrays[name] = value


def _read_v73(path: Path) -> dict[str, np.ndarray]:
    try:
        import h5py
    except ImportError as error:
        raise ModelFileError(
            f"{path} is a MATLAB v7.3 (HDF5) file; reading it needs the optional package "
            "h5py (pip install h5py), or re-save it in MATLAB with save(..., '-v7')"
        ) from error
    arrays: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as handle:
            _collect_v73(handle, "", arrays, h5py)
    except OSError as error:
        raise ModelFileError(f"{path} is not a readable MATLAB v7.3 file ({error})") from error
    return arrays


def _collect_v73(group, prefix: str, arrays: dict[str, np.ndarray], h5py) -> None:
    for name, item in group.items():
        if name.startswith("#"):  # '#refs#', '#subsystem#': MATLAB's internal storage
            continue
        key = f"{prefix}{name}"
        if isinstance(item, h5py.Group):
            _collect_v73(item, f"{key}.", arrays, h5py)
            continue
        matlab_class = item.attrs.get("MATLAB_class", b"double")
        if isinstance(matlab_class, bytes):
            matlab_class = matlab_class.decode("ascii", "replace")
        if matlab_class not in _NUMERIC_CLASSES or item.attrs.get("MATLAB_empty", 0):
            continue
        value = np.asarray(item[()])
        if value.dtype.kind in "biuf":
            # HDF5 holds MATLAB's column-major data with the axes reversed.
            arrays[key] = value.T
