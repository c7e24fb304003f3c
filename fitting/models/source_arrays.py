"""Checked access to the arrays of a source model file, and the conversions every format shares.

Source files (BFM 2009, 3DDFA, ExpNet, 3DDFA_V2) all store a linear model the same way:
coordinates interleaved vertex by vertex (``x1, y1, z1, x2, ...``) in a ``(3N, 1)`` mean and
``(3N, K)`` bases, one standard deviation per component, 1-based (MATLAB) or 0-based
(Python) indices. The helpers here turn those into the ``(V, 3)`` / ``(V, 3, K)`` sigma-unit
arrays of :class:`~fitting.models.MorphableModel`, written once for all formats, and every
error names the file, the key, and the expected and actual shapes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from fitting.models.model import EXPRESSION_DIM, NUM_LANDMARKS, ModelFileError

__all__ = [
    "SourceArrays",
    "deinterleave",
    "gather_vertices",
    "sigma_basis",
    "length_scale_to_mm",
    "landmark_vertices",
    "triangles_zero_based",
    "file_sha256",
    "require_expression_dim",
    "vertex_index_list",
]

# Plausible width (x extent) of a face or head in millimetres; a mean outside it in every
# candidate unit is refused rather than guessed.
_FACE_WIDTH_MM = (50.0, 500.0)
_UNIT_TO_MM = {"mm": 1.0, "um": 1e-3, "m": 1e3}


@dataclasses.dataclass(frozen=True)
class SourceArrays:
    """The numeric arrays of one source file, with checked, shape-validated access.

    Attributes
    ----------
    path : Path            the file the arrays came from (named in every error)
    arrays : dict          key (``struct.field`` for MATLAB struct fields) to array
    """

    path: Path
    arrays: dict

    def key(self, *names: str) -> str:
        """The first of ``names`` present, at top level or as a field of a struct."""
        for name in names:
            if name in self.arrays:
                return name
            nested = sorted(key for key in self.arrays if key.endswith(f".{name}"))
            if nested:
                return nested[0]
        raise ModelFileError(
            f"{self.path}: missing key {' / '.join(repr(n) for n in names)} "
            f"(found: {', '.join(sorted(self.arrays)) or 'no numeric arrays'})"
        )

    def has(self, *names: str) -> bool:
        try:
            self.key(*names)
        except ModelFileError:
            return False
        return True

    def matrix(self, *names: str, rows: int | None = None, cols: int | None = None) -> np.ndarray:
        """A finite 2-D float64 array ``(rows, cols)``; ``None`` leaves a size free."""
        key = self.key(*names)
        value = np.asarray(self.arrays[key])
        expected = f"({rows if rows is not None else 'any'}, {cols if cols is not None else 'any'})"
        if value.ndim != 2 or (rows is not None and value.shape[0] != rows) or (
            cols is not None and value.shape[1] != cols
        ):
            raise ModelFileError(
                f"{self.path}: key {key!r} must have shape {expected}, got {value.shape}"
            )
        return self._finite(key, value)

    def vector(self, *names: str, length: int | None = None) -> np.ndarray:
        """A finite float64 vector, stored as ``(n, 1)``, ``(1, n)`` or ``(n,)``."""
        key = self.key(*names)
        value = np.asarray(self.arrays[key])
        is_vector = value.ndim == 1 or (value.ndim == 2 and 1 in value.shape)
        squeezed = value.reshape(-1) if is_vector else None
        if squeezed is None or (length is not None and squeezed.shape[0] != length):
            expected = f"({length if length is not None else 'n'}, 1)"
            raise ModelFileError(
                f"{self.path}: key {key!r} must be a vector of shape {expected}, got {value.shape}"
            )
        return self._finite(key, squeezed)

    def raw(self, *names: str) -> tuple[str, np.ndarray]:
        """The key used and its array, unchecked (for indices, checked by their own helpers)."""
        key = self.key(*names)
        return key, np.asarray(self.arrays[key])

    def where(self, key: str) -> str:
        return f"{self.path}: key {key!r}"

    def _finite(self, key: str, value: np.ndarray) -> np.ndarray:
        value = value.astype(np.float64)
        if not np.all(np.isfinite(value)):
            count = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise ModelFileError(f"{self.path}: key {key!r} has {count} NaN or infinite values")
        return value


def deinterleave(flat: np.ndarray) -> np.ndarray:
    """Split vertex-major interleaved coordinates into one row per vertex.

    Parameters
    ----------
    flat : (3N,) or (3N, K)   ``x1, y1, z1, x2, ...`` down the first axis

    Returns
    -------
    (N, 3) or (N, 3, K)
    """
    if flat.shape[0] % 3:
        raise ValueError(f"interleaved coordinates need a multiple of 3 rows, got {flat.shape}")
    return flat.reshape(flat.shape[0] // 3, 3, *flat.shape[1:])


def gather_vertices(flat: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Rows of interleaved coordinates belonging to the given vertices, still interleaved.

    Parameters
    ----------
    flat : (3N,) or (3N, K)   ``x1, y1, z1, x2, ...`` down the first axis
    vertices : (M,) int       0-based vertex indices

    Returns
    -------
    (3M,) or (3M, K)          ``x, y, z`` of ``vertices[0]``, then of ``vertices[1]``, ...
    """
    rows = (3 * np.asarray(vertices)[:, np.newaxis] + np.arange(3)).reshape(-1)
    return flat[rows]


def sigma_basis(components: np.ndarray, std: np.ndarray, scale_to_mm: float) -> np.ndarray:
    """Scale raw basis columns to one standard deviation each, in millimetres.

    Parameters
    ----------
    components : (3N, K)   raw columns; a coefficient ``c_k`` moves the shape by ``c_k`` times
                           column ``k`` (in the source's length unit)
    std : (K,)             standard deviation of each coefficient ``c_k``
    scale_to_mm : float    millimetres per source length unit

    Returns
    -------
    basis : (N, 3, K)      column ``k`` is ``components[:, k] * std[k]`` in mm, de-interleaved
    """
    if components.ndim != 2 or std.shape != (components.shape[1],):
        raise ValueError(f"expected components (3N, K) and std (K,), got "
                         f"{components.shape} and {std.shape}")
    return deinterleave(components * std[np.newaxis, :] * scale_to_mm)


def length_scale_to_mm(mean: np.ndarray, where: str) -> tuple[float, str]:
    """Detect the length unit of a face model from the width of its mean shape.

    A face is roughly 150 mm wide: about 1.5e5 in micrometres (BFM 2009, 3DDFA), 150 in
    millimetres, 0.15 in metres. The unit whose conversion puts the x extent of the mean in
    [50, 500] mm is chosen; a mean that fits none is refused.

    Parameters
    ----------
    mean : (N, 3)     the model's mean shape in the source unit
    where : str       file and key, for the error message

    Returns
    -------
    scale_to_mm : float   millimetres per source unit
    unit : str            "mm", "um" or "m"
    """
    width = float(np.ptp(mean[:, 0])) if mean.size else 0.0
    for unit, scale in _UNIT_TO_MM.items():
        if _FACE_WIDTH_MM[0] <= width * scale <= _FACE_WIDTH_MM[1]:
            return scale, unit
    raise ModelFileError(
        f"{where}: cannot tell the length unit: the mean is {width:g} wide in x, not a face "
        f"width in mm (50-500), um (5e4-5e5) or m (0.05-0.5)"
    )


def landmark_vertices(raw: np.ndarray, num_vertices: int, *, one_based: bool,
                      where: str) -> tuple[np.ndarray, str]:
    """0-based vertex indices of the 68 iBUG landmarks from a source's keypoint list.

    Sources store keypoints in one of three conventions, told apart by the values:

    - 204 entries: flattened coordinate indices, ``x, y, z`` of each landmark vertex in turn
      (3DDFA's Python ``keypoints``); each triple must be consecutive and start at a multiple
      of 3 (0-based).
    - 68 entries that are all x-coordinate indices into the flattened ``(3N,)`` array
      (0-based multiples of 3 below ``3N``): flattened indices. 68 genuine vertex indices would
      all be multiples of 3 with probability ``3**-68``, so this reading wins when it fits.
    - otherwise 68 vertex indices, which must lie below ``N``.

    Parameters
    ----------
    raw : array of 68 or 204 integers
    num_vertices : int        N
    one_based : bool          whether the source counts from 1 (MATLAB files)
    where : str               file and key, for error messages

    Returns
    -------
    landmarks : (68,) int64   0-based vertex indices
    convention : str          which convention was recognised (recorded in the metadata)
    """
    values = _integers(raw, where).reshape(-1)
    if values.size not in (NUM_LANDMARKS, 3 * NUM_LANDMARKS):
        raise ModelFileError(
            f"{where}: keypoints must have 68 (or 3 x 68 = 204) entries, got shape {raw.shape}"
        )
    zero_based = _to_zero_based(values, one_based=one_based, where=where)
    if values.size == 3 * NUM_LANDMARKS:
        triples = zero_based.reshape(NUM_LANDMARKS, 3)
        consistent = np.all(triples[:, 0] % 3 == 0) and np.all(
            triples - triples[:, :1] == np.arange(3)
        )
        if not consistent or triples.max() >= 3 * num_vertices:
            raise ModelFileError(
                f"{where}: 204 keypoints must be consecutive x, y, z coordinate indices of 68 "
                f"vertices below 3 x {num_vertices}"
            )
        return triples[:, 0] // 3, "flattened xyz coordinate indices (204)"
    if np.all(zero_based % 3 == 0) and zero_based.max() < 3 * num_vertices:
        return zero_based // 3, "flattened x-coordinate indices (68)"
    if zero_based.max() < num_vertices:
        return zero_based, "vertex indices (68)"
    raise ModelFileError(
        f"{where}: keypoints are neither vertex indices below {num_vertices} nor flattened "
        f"x-coordinate indices below {3 * num_vertices} (largest: {int(values.max())})"
    )


def triangles_zero_based(raw: np.ndarray, num_vertices: int, *, one_based: bool,
                         where: str) -> np.ndarray:
    """``(T, 3)`` 0-based triangles from ``(T, 3)`` or ``(3, T)`` source indices.

    Raises
    ------
    ModelFileError
        For another shape, a 0 in 1-based indices, or an index beyond the vertices.
    """
    values = _integers(raw, where)
    if values.ndim != 2 or 3 not in values.shape:
        raise ModelFileError(f"{where}: triangles must be (T, 3) or (3, T), got {raw.shape}")
    triangles = values if values.shape[1] == 3 else values.T
    triangles = _to_zero_based(triangles, one_based=one_based, where=where)
    if triangles.size and triangles.max() >= num_vertices:
        limit = num_vertices if one_based else num_vertices - 1
        raise ModelFileError(
            f"{where}: triangle index {int(values.max())} is beyond the {num_vertices} "
            f"vertices (largest allowed: {limit})"
        )
    return triangles


def vertex_index_list(raw: np.ndarray, num_vertices: int, *, one_based: bool,
                      where: str) -> np.ndarray:
    """0-based vertex indices ``(M,)`` from an index vector such as 3DDFA's ``trimIndex``."""
    values = _integers(raw, where).reshape(-1)
    zero_based = _to_zero_based(values, one_based=one_based, where=where)
    if zero_based.size == 0 or zero_based.max() >= num_vertices:
        raise ModelFileError(
            f"{where}: indices must select vertices of a {num_vertices}-vertex model, got "
            f"{values.size} indices up to {int(values.max()) if values.size else 'none'}"
        )
    if np.unique(zero_based).size != zero_based.size:
        raise ModelFileError(f"{where}: indices repeat a vertex")
    return zero_based


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require_expression_dim(num_components: int, where: str) -> None:
    """Refuse an expression basis that does not have exactly 29 components."""
    if num_components != EXPRESSION_DIM:
        raise ModelFileError(
            f"{where}: the expression basis has {num_components} components; ExpNet labels "
            f"need exactly {EXPRESSION_DIM}"
        )


def _integers(raw: np.ndarray, where: str) -> np.ndarray:
    values = np.asarray(raw)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ModelFileError(f"{where}: indices must be whole numbers")
    elif values.dtype.kind not in "iub":
        raise ModelFileError(f"{where}: indices must be numeric, got dtype {values.dtype}")
    return values.astype(np.int64)


def _to_zero_based(values: np.ndarray, *, one_based: bool, where: str) -> np.ndarray:
    if values.size == 0:
        return values
    if one_based and values.min() < 1:
        raise ModelFileError(
            f"{where}: found index {int(values.min())} where 1-based (MATLAB) indices are "
            "expected"
        )
    if not one_based and values.min() < 0:
        raise ModelFileError(f"{where}: found negative index {int(values.min())}")
    return values - 1 if one_based else values
