"""The in-memory morphable model and its one file format (a compressed ``.npz``).

A :class:`MorphableModel` is a linear 3D shape model::

    shape(identity, expression) = mean + identity_basis @ identity + expression_basis @ expression

with both bases stored in sigma units: column ``k`` of a basis, times 1.0, is one standard
deviation of the source model's component ``k``. Coefficients are therefore in sigma units,
as ExpNet's labels are; ``coefficients * expression_std`` gives the source model's raw
coefficients back.

File format
-----------
``np.savez_compressed`` with the arrays below plus ``header``, a UTF-8 JSON document stored as
a ``uint8`` array, so that loading never unpickles anything (``allow_pickle=False``). Arrays are
stored as float32 / int32; the content hash is computed over that canonical form, so a model
hashes the same before saving and after loading.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

FORMAT_NAME = "expnet-data/morphable-model"
FORMAT_VERSION = 1
EXPRESSION_DIM = 29
# The iBUG 68-point layout, the one definition for the fitting library (fitting never imports
# schemas; schemas.rows.NUM_LANDMARKS is the row contract's, and a test checks they agree).
NUM_LANDMARKS = 68
NUM_CONTOUR_LANDMARKS = 17
# Outer corners of the two eyes in that layout: their distance is the face's size unit.
OUTER_EYE_CORNERS = (36, 45)

# (name, canonical dtype) in hashing order; contour_candidates is optional.
_ARRAY_FIELDS = (
    ("mean", np.float32),
    ("identity_basis", np.float32),
    ("identity_std", np.float32),
    ("expression_basis", np.float32),
    ("expression_std", np.float32),
    ("landmark_indices", np.int32),
    ("contour_candidates", np.int32),
    ("triangles", np.int32),
    ("blendshape_gram", np.float32),
    ("blendshape_cross", np.float32),
)
# Optional arrays: a model file without them is valid (blendshape_* come with named units).
_OPTIONAL_ARRAYS = ("contour_candidates", "blendshape_gram", "blendshape_cross")


class ModelFileError(ValueError):
    """A model file is missing, truncated, malformed or inconsistent."""


@dataclasses.dataclass(frozen=True, eq=False)
class MorphableModel:
    """A linear 3D morphable model with sigma-unit identity and expression bases.

    Attributes
    ----------
    mean : (V, 3) float64            mean shape in ``units`` (expression-neutral mean included)
    identity_basis : (V, 3, K_id) float64      one standard deviation per column
    identity_std : (K_id,) float64   the source model's standard deviations
    expression_basis : (V, 3, K_exp) float64   one standard deviation per column; K_exp = 29
    expression_std : (K_exp,) float64
    landmark_indices : (68,) int64   vertex of each iBUG-68 landmark, 0-based
    triangles : (T, 3) int64         0-based vertex indices
    contour_candidates : (17, C) int64 or None
        For each jaw-line landmark (iBUG 0..16), candidate vertices ordered from the frontal
        landmark vertex outwards towards the side of the head; ``-1`` pads short rows.
    blendshape_names : tuple of str or None   names of the model's named units (ARKit)
    blendshape_gram : (U, U) float64 or None  ``F^T F`` of the units' flattened displacement
                                     fields ``F`` (3V, U) over the model's vertices, mm^2
    blendshape_cross : (U, K_exp) float64 or None   ``F^T E`` with ``E`` the flattened
                                     expression basis (3V, K_exp); see :mod:`fitting.blendshapes`
    units : str                      length unit of ``mean`` and the bases ("mm")
    model_id : str                   short human-readable name
    metadata : dict                  provenance (source files, licence, build parameters)
    """

    mean: np.ndarray
    identity_basis: np.ndarray
    identity_std: np.ndarray
    expression_basis: np.ndarray
    expression_std: np.ndarray
    landmark_indices: np.ndarray
    triangles: np.ndarray
    contour_candidates: np.ndarray | None = None
    blendshape_gram: np.ndarray | None = None
    blendshape_cross: np.ndarray | None = None
    blendshape_names: tuple | None = None
    units: str = "mm"
    model_id: str = "unnamed"
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for name, dtype in _ARRAY_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            kind = np.float64 if dtype == np.float32 else np.int64
            object.__setattr__(self, name, np.ascontiguousarray(value, dtype=kind))
        if self.blendshape_names is not None:
            object.__setattr__(self, "blendshape_names", tuple(self.blendshape_names))
        validate_model(self)

    @property
    def num_vertices(self) -> int:
        return self.mean.shape[0]

    @property
    def identity_dim(self) -> int:
        return self.identity_basis.shape[2]

    @property
    def expression_dim(self) -> int:
        return self.expression_basis.shape[2]

    @property
    def content_hash(self) -> str:
        """sha256 over the canonical (float32/int32) arrays and the units, hex digest."""
        cached = self.__dict__.get("_content_hash")
        if cached is None:
            cached = _hash_arrays(self)
            object.__setattr__(self, "_content_hash", cached)
        return cached

    def shape(self, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
        """Vertices of the face with the given coefficients.

        Parameters
        ----------
        identity : (K_id,) or (B, K_id)   sigma units
        expression : (K_exp,) or (B, K_exp)   sigma units

        Returns
        -------
        vertices : (V, 3) or (B, V, 3) float64
        """
        identity = np.asarray(identity, dtype=np.float64)
        expression = np.asarray(expression, dtype=np.float64)
        if identity.shape[-1] != self.identity_dim or expression.shape[-1] != self.expression_dim:
            raise ValueError(
                f"expected identity (..., {self.identity_dim}) and expression "
                f"(..., {self.expression_dim}), got {identity.shape} and {expression.shape}"
            )
        return (
            self.mean
            + np.einsum("vck,...k->...vc", self.identity_basis, identity)
            + np.einsum("vck,...k->...vc", self.expression_basis, expression)
        )



def validate_model(model: MorphableModel) -> None:
    """Raise :class:`ModelFileError` naming the first inconsistency found in ``model``."""
    mean = model.mean
    if mean.ndim != 2 or mean.shape[1] != 3 or mean.shape[0] < NUM_LANDMARKS:
        raise ModelFileError(f"mean must be (V, 3) with V >= 68, got {mean.shape}")
    num_vertices = mean.shape[0]
    for basis_name, std_name in (("identity_basis", "identity_std"),
                                 ("expression_basis", "expression_std")):
        basis, std = getattr(model, basis_name), getattr(model, std_name)
        if basis.ndim != 3 or basis.shape[:2] != (num_vertices, 3):
            raise ModelFileError(f"{basis_name} must be ({num_vertices}, 3, K), got {basis.shape}")
        if std.shape != (basis.shape[2],):
            raise ModelFileError(f"{std_name} must be ({basis.shape[2]},), got {std.shape}")
        if not (np.all(np.isfinite(basis)) and np.all(np.isfinite(std))):
            raise ModelFileError(f"{basis_name} or {std_name} has non-finite values")
        if np.any(std <= 0):
            raise ModelFileError(f"{std_name} must be positive")
    if model.expression_basis.shape[2] != EXPRESSION_DIM:
        raise ModelFileError(
            f"the expression basis has {model.expression_basis.shape[2]} components; "
            f"ExpNet labels need exactly {EXPRESSION_DIM}"
        )
    if not np.all(np.isfinite(mean)):
        raise ModelFileError("mean has non-finite values")
    landmarks = model.landmark_indices
    if landmarks.shape != (NUM_LANDMARKS,):
        raise ModelFileError(f"landmark_indices must be (68,), got {landmarks.shape}")
    if landmarks.min() < 0 or landmarks.max() >= num_vertices:
        raise ModelFileError(f"landmark_indices must lie in [0, {num_vertices})")
    if len(np.unique(landmarks)) != NUM_LANDMARKS:
        raise ModelFileError("landmark_indices must be 68 distinct vertices")
    triangles = model.triangles
    if triangles.ndim != 2 or triangles.shape[1] != 3:
        raise ModelFileError(f"triangles must be (T, 3), got {triangles.shape}")
    if triangles.size and (triangles.min() < 0 or triangles.max() >= num_vertices):
        raise ModelFileError(f"triangles must index vertices in [0, {num_vertices})")
    contour = model.contour_candidates
    if contour is not None:
        if contour.ndim != 2 or contour.shape[0] != NUM_CONTOUR_LANDMARKS:
            raise ModelFileError(f"contour_candidates must be (17, C), got {contour.shape}")
        if contour.min() < -1 or contour.max() >= num_vertices:
            raise ModelFileError(f"contour_candidates must be -1 or lie in [0, {num_vertices})")
        if np.any(contour[:, 0] < 0):
            raise ModelFileError("each contour_candidates row needs at least one vertex")
    _validate_blendshapes(model)
    if model.units != "mm":
        raise ModelFileError(f"models are stored in millimetres, got units {model.units!r}")


def _validate_blendshapes(model: MorphableModel) -> None:
    fields = (model.blendshape_names, model.blendshape_gram, model.blendshape_cross)
    if all(field is None for field in fields):
        return
    if any(field is None for field in fields):
        raise ModelFileError("blendshape_names, blendshape_gram and blendshape_cross come "
                             "together or not at all")
    count = len(model.blendshape_names)
    if model.blendshape_gram.shape != (count, count):
        raise ModelFileError(f"blendshape_gram must be ({count}, {count}), "
                             f"got {model.blendshape_gram.shape}")
    if model.blendshape_cross.shape != (count, model.expression_basis.shape[2]):
        raise ModelFileError(f"blendshape_cross must be ({count}, "
                             f"{model.expression_basis.shape[2]}), "
                             f"got {model.blendshape_cross.shape}")
    if not (np.all(np.isfinite(model.blendshape_gram))
            and np.all(np.isfinite(model.blendshape_cross))):
        raise ModelFileError("blendshape_gram or blendshape_cross has non-finite values")


def _canonical_arrays(model: MorphableModel) -> dict[str, np.ndarray]:
    arrays = {}
    for name, dtype in _ARRAY_FIELDS:
        value = getattr(model, name)
        if value is not None:
            array = np.ascontiguousarray(value, dtype=dtype)
            if array.dtype.kind == "f":
                # -0.0 becomes 0.0: LAPACK builds differ in the sign of exact zeros (a PCA
                # of the same targets gave 5552 of them flipped), which would change the
                # content hash of a rebuild without changing any value.
                array = array + array.dtype.type(0)
            arrays[name] = array
    return arrays


def _hash_arrays(model: MorphableModel) -> str:
    digest = hashlib.sha256()
    digest.update(f"{FORMAT_NAME}/{FORMAT_VERSION};units={model.units}".encode())
    for name, array in _canonical_arrays(model).items():
        digest.update(f";{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    if model.blendshape_names is not None:
        digest.update(f";blendshape_names:{json.dumps(list(model.blendshape_names))}".encode())
    return digest.hexdigest()


def save_model(model: MorphableModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` (a ``.npz``), float32/int32, with a JSON header.

    Returns the path written.
    """
    path = Path(path)
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_id": model.model_id,
        "units": model.units,
        "content_hash": model.content_hash,
        "metadata": model.metadata,
    }
    if model.blendshape_names is not None:
        header["blendshape_names"] = list(model.blendshape_names)
    header_bytes = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez_compressed(handle, header=header_bytes, **_canonical_arrays(model))
    return path


def read_model_file(path: str | Path) -> MorphableModel:
    """Load a model written by :func:`save_model`; never unpickles.

    Raises
    ------
    ModelFileError
        When the file is missing, not an ``.npz``, truncated, lacks arrays, or its arrays do
        not match the content hash in its header.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        raise ModelFileError(f"{path} is not a readable model .npz ({error})") from error
    if "header" not in arrays:
        raise ModelFileError(f"{path} has no 'header' array: not an expnet-data model file")
    try:
        header = json.loads(arrays.pop("header").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path} has an unreadable header ({error})") from error
    if header.get("format") != FORMAT_NAME or header.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} is format {header.get('format')!r} v{header.get('format_version')}, "
            f"expected {FORMAT_NAME!r} v{FORMAT_VERSION}"
        )
    required = [name for name, _ in _ARRAY_FIELDS if name not in _OPTIONAL_ARRAYS]
    missing = [name for name in required if name not in arrays]
    if missing:
        raise ModelFileError(f"{path} lacks arrays: {', '.join(missing)}")
    model = MorphableModel(
        **{name: arrays.get(name) for name, _ in _ARRAY_FIELDS},
        blendshape_names=header.get("blendshape_names"),
        units=header.get("units", "mm"),
        model_id=header.get("model_id", path.stem),
        metadata=header.get("metadata", {}),
    )
    if header.get("content_hash") not in (None, model.content_hash):
        raise ModelFileError(
            f"{path}: arrays do not match the header's content hash (file altered or corrupt)"
        )
    return model
