"""Convert the morphable-model files ExpNet users already hold into a :class:`MorphableModel`.

Nothing here ships model data: BFM 2009 and the 3DDFA expression basis may not be
redistributed, so users convert their own copies (``expnet models convert``).

Every format stores ``mean + components @ (std * c)`` with interleaved ``x1, y1, z1, ...``
coordinates. The converted model keeps one length unit (mm) and sigma-unit bases
(``components * std``), so a converted label ``c`` is the source's coefficient divided by its
standard deviation, and ``label * expression_std`` gives the source's raw coefficient back.

Formats
-------
``bfm2009+3ddfa``
    BFM 2009 ``01_MorphableModel.mat`` (``shapeMU``, ``shapePC`` orthonormal, ``shapeEV``
    standard deviations, all in micrometres; ``tl`` 1-based triangles) plus 3DDFA's
    ``Model_Expression.mat`` (``mu_exp``, ``w_exp``, ``sigma_exp``) on 3DDFA's trimmed vertex
    layout. BFM is gathered onto that layout through 3DDFA's 1-based ``trimIndex`` (a
    ``--trim-index`` file or the layout file). ``mu_exp`` is added to the mean.
``3ddfa``
    3DDFA's ``Model_Shape.mat`` (``mu_shape``, ``w``, ``sigma``, ``keypoints``, ``tri``)
    plus ``Model_Expression.mat``: the same layout, no BFM needed.
``expnet``
    ExpNet's ``BaselFaceModel_mod.mat`` (top-level arrays or the struct ``BFM``). ExpNet
    builds ``shapeMU + shapePC @ (shapeEV * a) + expMU + expPC @ (expEV * e)`` from its
    networks' raw outputs ``a`` and ``e``, so with bases ``PC * EV`` our sigma-unit
    coefficients are exactly ExpNet's outputs.
``3ddfa_v2``
    3DDFA_V2's pickle (``u``, ``w_shp``, ``w_exp``, ``tri``, ``keypoints``), read only when
    trusted and then through a restricted unpickler. Its ``bfm_noneck_v3.pkl`` has 10
    expression components and is refused.

Units: 3DDFA's shape model is BFM 2009 gathered through ``trimIndex``, so it is in
micrometres like BFM, and ``Model_Expression.mat`` shares that unit. Rather than trust a
format's reputation, every converter detects the unit from the width of the mean face
(:func:`~fitting.models.source_arrays.length_scale_to_mm`) and records it in the metadata.
Axes are kept as stored: BFM and its derivatives already use x right (image), y up, z towards
the viewer, the convention of :mod:`fitting`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from fitting.models.matlab import read_mat
from fitting.models.model import EXPRESSION_DIM, ModelFileError, MorphableModel
from fitting.models.safe_pickle import load_array_pickle
from fitting.models.source_arrays import (
    SourceArrays,
    deinterleave,
    file_sha256,
    gather_vertices,
    landmark_vertices,
    length_scale_to_mm,
    require_expression_dim,
    sigma_basis,
    triangles_zero_based,
    vertex_index_list,
)

__all__ = [
    "FORMATS",
    "convert_bfm2009_3ddfa",
    "convert_3ddfa",
    "convert_expnet",
    "convert_3ddfa_v2",
]

FORMATS = ("bfm2009+3ddfa", "3ddfa", "expnet", "3ddfa_v2")
EXPNET_LANDMARK_KEYS = ("landmarks", "lm", "keypoints", "landmark_indices", "kpt_ind")
# A trim index is accepted when BFM gathered through it matches the layout's own mean to this
# fraction of the face width (RMS, after centring: a right index matches to float precision,
# a wrong one is off by a good part of the face).
_LAYOUT_MATCH_TOLERANCE = 0.01
_LICENCE_NOTE = "converted from user-supplied files; the source model's licence applies " \
    "(BFM 2009 and 3DDFA's expression basis may not be redistributed)"


def convert_bfm2009_3ddfa(bfm_path: str | Path, expression_path: str | Path, *,
                          shape_layout_path: str | Path | None = None,
                          trim_index_path: str | Path | None = None,
                          model_id: str = "bfm2009-3ddfa") -> MorphableModel:
    """BFM 2009 identity + 3DDFA expression on 3DDFA's trimmed vertex layout.

    Parameters
    ----------
    bfm_path : ``01_MorphableModel.mat``
    expression_path : 3DDFA's ``Model_Expression.mat``
    shape_layout_path : 3DDFA's ``Model_Shape.mat``, for ``keypoints`` and ``tri`` (and
        ``trimIndex`` when it carries one); its ``mu_shape`` checks the trim index
    trim_index_path : a ``.mat`` with ``trimIndex`` (1-based BFM vertices, e.g. face3d's
        ``BFM_info``), needed when the layout file has none
    model_id : name stored in the model

    Returns
    -------
    MorphableModel
        Identity: BFM ``shapePC * shapeEV`` (``identity_std`` = ``shapeEV``, micrometres per
        unit of BFM's orthonormal coefficients); expression: ``w_exp * sigma_exp``
        (``expression_std`` = ``sigma_exp``); mean: BFM ``shapeMU`` + ``mu_exp``.
    """
    bfm = SourceArrays(Path(bfm_path), read_mat(bfm_path))
    layout = _optional_mat(shape_layout_path)
    trim_file = _optional_mat(trim_index_path)

    bfm_mean = bfm.vector("shapeMU")
    bfm_vertices = _vertex_count(bfm, "shapeMU", bfm_mean)
    bfm_components = bfm.matrix("shapePC", rows=bfm_mean.size)
    bfm_std = bfm.vector("shapeEV", length=bfm_components.shape[1])
    bfm_scale, bfm_unit = length_scale_to_mm(deinterleave(bfm_mean), bfm.where("shapeMU"))

    trim_source = _first_with(("trimIndex",), trim_file, layout)
    if trim_source is None:
        raise ModelFileError(
            "bfm2009+3ddfa needs 3DDFA's trimIndex (1-based BFM vertices of the trimmed "
            "layout): pass --trim-index FILE.mat (key 'trimIndex') or a --shape-layout file "
            "that carries one"
        )
    trim_key, trim_raw = trim_source.raw("trimIndex")
    trim = vertex_index_list(trim_raw, bfm_vertices, one_based=True,
                             where=trim_source.where(trim_key))
    mean_trimmed = gather_vertices(bfm_mean, trim)

    expression = _read_3ddfa_expression(Path(expression_path), rows=3 * trim.size)
    notes = [
        "BFM 2009 gathered onto 3DDFA's trimmed layout through trimIndex",
        "identity_std = BFM shapeEV (standard deviations of coefficients on BFM's orthonormal "
        f"shapePC, in {bfm_unit})",
        "expression_std = 3DDFA sigma_exp; mean includes 3DDFA mu_exp",
    ]
    if layout is not None and layout.has("mu_shape"):
        layout_mean = layout.vector("mu_shape", length=3 * trim.size)
        expression_scale, expression_unit = length_scale_to_mm(
            deinterleave(layout_mean), layout.where(layout.key("mu_shape")))
        _check_layout_match(mean_trimmed * bfm_scale, layout_mean * expression_scale, layout)
        notes.append(f"3DDFA expression unit {expression_unit}, from the layout's mu_shape")
    else:
        expression_scale, expression_unit = bfm_scale, bfm_unit
        notes.append(f"3DDFA expression unit taken as BFM's ({bfm_unit}): 3DDFA's shape model "
                     "is BFM gathered through trimIndex")

    landmark_source = _first_with(("keypoints",), layout, trim_file)
    if landmark_source is None:
        raise ModelFileError(
            "bfm2009+3ddfa needs the 68 keypoints of the trimmed layout (BFM 2009 has none): "
            "pass --shape-layout Model_Shape.mat (key 'keypoints')"
        )
    landmark_key, landmark_raw = landmark_source.raw("keypoints")
    landmarks, convention = landmark_vertices(landmark_raw, trim.size, one_based=True,
                                              where=landmark_source.where(landmark_key))

    if layout is not None and layout.has("tri"):
        tri_key, tri_raw = layout.raw("tri")
        triangles = triangles_zero_based(tri_raw, trim.size, one_based=True,
                                         where=layout.where(tri_key))
        notes.append("triangles from the layout file's tri")
    else:
        tl_key, tl_raw = bfm.raw("tl")
        bfm_triangles = triangles_zero_based(tl_raw, bfm_vertices, one_based=True,
                                             where=bfm.where(tl_key))
        triangles = _restrict_triangles(bfm_triangles, trim, bfm_vertices)
        notes.append("triangles: BFM tl restricted to the trimmed vertices")

    files = {"bfm": bfm_path, "expression": expression_path,
             "shape_layout": shape_layout_path, "trim_index": trim_index_path}
    return _pca_model(
        mean_mm=mean_trimmed * bfm_scale + expression.mean * expression_scale,
        identity=(gather_vertices(bfm_components, trim), bfm_std, bfm_scale),
        expression=(expression.components, expression.std, expression_scale),
        landmarks=landmarks, triangles=triangles, model_id=model_id,
        metadata=_metadata("bfm2009+3ddfa", files, units={"bfm": bfm_unit,
                                                          "expression": expression_unit},
                           landmarks=f"{landmark_source.path.name}:{landmark_key}, {convention}",
                           notes=notes),
    )


def convert_3ddfa(shape_path: str | Path, expression_path: str | Path, *,
                  model_id: str = "3ddfa") -> MorphableModel:
    """3DDFA's ``Model_Shape.mat`` + ``Model_Expression.mat`` (one shared layout and unit).

    ``identity_std`` = ``sigma`` and ``expression_std`` = ``sigma_exp`` (3DDFA's standard
    deviations); bases are ``w * sigma`` and ``w_exp * sigma_exp``; the mean is
    ``mu_shape + mu_exp``. Keypoints and triangles are 1-based.
    """
    shape = SourceArrays(Path(shape_path), read_mat(shape_path))
    mean = shape.vector("mu_shape")
    num_vertices = _vertex_count(shape, "mu_shape", mean)
    components = shape.matrix("w", rows=mean.size)
    std = shape.vector("sigma", length=components.shape[1])
    scale, unit = length_scale_to_mm(deinterleave(mean), shape.where("mu_shape"))
    expression = _read_3ddfa_expression(Path(expression_path), rows=mean.size)
    landmarks, landmark_note, triangles = _landmarks_and_triangles(shape, num_vertices,
                                                                   one_based=True)
    return _pca_model(
        mean_mm=(mean + expression.mean) * scale,
        identity=(components, std, scale),
        expression=(expression.components, expression.std, scale),
        landmarks=landmarks, triangles=triangles, model_id=model_id,
        metadata=_metadata("3ddfa", {"shape": shape_path, "expression": expression_path},
                           units={"shape": unit, "expression": unit},
                           landmarks=landmark_note,
                           notes=["identity_std = 3DDFA sigma; expression_std = 3DDFA "
                                  "sigma_exp; mean includes mu_exp"]),
    )


def convert_expnet(bfm_path: str | Path, *, model_id: str = "expnet-bfm") -> MorphableModel:
    """ExpNet's ``BaselFaceModel_mod.mat``; sigma-unit labels equal ExpNet's raw outputs.

    ExpNet (``utils.projectBackBFM_withExpr`` in fengju514/Expression-Net) multiplies its
    network outputs by ``shapeEV`` / ``expEV`` before the ``shapePC`` / ``expPC`` products and
    adds ``shapeMU + expMU``. The converted bases are ``PC * EV`` and the mean
    ``shapeMU + expMU``, so ``model.shape(a, e)`` is ExpNet's shape for outputs ``a``, ``e``.
    Landmarks: 68 1-based entries under one of ``landmarks``, ``lm``, ``keypoints``,
    ``landmark_indices``, ``kpt_ind`` (the key used is recorded in the metadata).
    """
    source = SourceArrays(Path(bfm_path), read_mat(bfm_path))
    shape_mean = source.vector("shapeMU")
    num_vertices = _vertex_count(source, source.key("shapeMU"), shape_mean)
    shape_components = source.matrix("shapePC", rows=shape_mean.size)
    shape_std = source.vector("shapeEV", length=shape_components.shape[1])
    expression_components = source.matrix("expPC", rows=shape_mean.size)
    require_expression_dim(expression_components.shape[1], source.where(source.key("expPC")))
    expression_std = source.vector("expEV", length=EXPRESSION_DIM)
    expression_mean = source.vector("expMU", length=shape_mean.size)
    scale, unit = length_scale_to_mm(deinterleave(shape_mean), source.where(source.key("shapeMU")))
    landmark_key, landmark_raw = source.raw(*EXPNET_LANDMARK_KEYS)
    landmarks, convention = landmark_vertices(landmark_raw, num_vertices, one_based=True,
                                              where=source.where(landmark_key))
    faces_key, faces_raw = source.raw("faces", "tri", "tl")
    triangles = triangles_zero_based(faces_raw, num_vertices, one_based=True,
                                     where=source.where(faces_key))
    return _pca_model(
        mean_mm=(shape_mean + expression_mean) * scale,
        identity=(shape_components, shape_std, scale),
        expression=(expression_components, expression_std, scale),
        landmarks=landmarks, triangles=triangles, model_id=model_id,
        metadata=_metadata("expnet", {"bfm": bfm_path}, units={"bfm": unit},
                           landmarks=f"{source.path.name}:{landmark_key}, {convention}",
                           notes=["labels equal ExpNet's raw network outputs: ExpNet scales "
                                  "them by expEV / shapeEV before the PC products",
                                  f"triangles from {faces_key}"]),
    )


def convert_3ddfa_v2(pkl_path: str | Path, *, trust_pickle: bool = False,
                     model_id: str = "3ddfa-v2") -> MorphableModel:
    """3DDFA_V2's model pickle (``u``, ``w_shp``, ``w_exp``, ``tri``, ``keypoints``; 0-based).

    Refused unless ``trust_pickle``: unpickling can run code. Even then only NumPy arrays and
    plain containers are admitted (:mod:`fitting.models.safe_pickle`). 3DDFA_V2 stores no
    standard deviations, so its bases are kept as stored with ``*_std`` = 1 and labels are
    3DDFA_V2's raw coefficients. Its ``bfm_noneck_v3.pkl`` has 10 expression components and
    is refused (ExpNet labels need 29).
    """
    path = Path(pkl_path)
    if not trust_pickle:
        raise ModelFileError(
            f"{path} is a pickle, and loading a pickle can run arbitrary code; pass "
            "--trust-pickle if it comes from a source you trust (only NumPy arrays are "
            "admitted even then)"
        )
    value = load_array_pickle(path)
    if not isinstance(value, dict):
        raise ModelFileError(f"{path}: expected a dict of arrays, got {type(value).__name__}")
    source = SourceArrays(path, {key: np.asarray(item) for key, item in value.items()
                                 if isinstance(key, str) and isinstance(item, np.ndarray)})
    mean = source.vector("u")
    num_vertices = _vertex_count(source, "u", mean)
    expression_components = source.matrix("w_exp", rows=mean.size)
    require_expression_dim(expression_components.shape[1], source.where("w_exp"))
    identity_components = source.matrix("w_shp", rows=mean.size)
    scale, unit = length_scale_to_mm(deinterleave(mean), source.where("u"))
    landmarks, landmark_note, triangles = _landmarks_and_triangles(source, num_vertices,
                                                                   one_based=False)
    identity_std = np.ones(identity_components.shape[1])
    expression_std = np.ones(EXPRESSION_DIM)
    return _pca_model(
        mean_mm=mean * scale,
        identity=(identity_components, identity_std, scale),
        expression=(expression_components, expression_std, scale),
        landmarks=landmarks, triangles=triangles, model_id=model_id,
        metadata=_metadata("3ddfa_v2", {"pkl": pkl_path}, units={"pkl": unit},
                           landmarks=landmark_note,
                           notes=["3DDFA_V2 stores no standard deviations: bases kept as "
                                  "stored, identity_std and expression_std are 1"]),
    )


def _pca_model(*, mean_mm: np.ndarray, identity: tuple, expression: tuple,
               landmarks: np.ndarray, triangles: np.ndarray, model_id: str,
               metadata: dict) -> MorphableModel:
    """The :class:`MorphableModel` of a converted file.

    Parameters
    ----------
    mean_mm : (3N,) float            interleaved mean shape, already in mm
    identity, expression : tuple     ``(components (3N, K) interleaved in the file's unit,
                                     std (K,), scale to mm)`` of each PCA
    landmarks : (68,) int, triangles : (T, 3) int   zero-based vertex indices
    """
    (identity_components, identity_std, identity_scale) = identity
    (expression_components, expression_std, expression_scale) = expression
    return MorphableModel(
        mean=deinterleave(mean_mm),
        identity_basis=sigma_basis(identity_components, identity_std, identity_scale),
        identity_std=identity_std,
        expression_basis=sigma_basis(expression_components, expression_std, expression_scale),
        expression_std=expression_std,
        landmark_indices=landmarks,
        triangles=triangles,
        model_id=model_id,
        metadata=metadata,
    )


@dataclasses.dataclass(frozen=True)
class _Expression:
    """3DDFA ``Model_Expression.mat``: interleaved ``mean`` (3N,), ``components`` (3N, 29),
    ``std`` (29,), in the file's own length unit."""

    mean: np.ndarray
    components: np.ndarray
    std: np.ndarray


def _read_3ddfa_expression(path: Path, *, rows: int) -> _Expression:
    source = SourceArrays(path, read_mat(path))
    components = source.matrix("w_exp", rows=rows)
    require_expression_dim(components.shape[1], source.where(source.key("w_exp")))
    return _Expression(
        mean=source.vector("mu_exp", length=rows),
        components=components,
        std=source.vector("sigma_exp", length=EXPRESSION_DIM),
    )


def _optional_mat(path: str | Path | None) -> SourceArrays | None:
    return None if path is None else SourceArrays(Path(path), read_mat(path))


def _first_with(names: tuple[str, ...], *sources: SourceArrays | None) -> SourceArrays | None:
    for source in sources:
        if source is not None and source.has(*names):
            return source
    return None


def _landmarks_and_triangles(source: SourceArrays, num_vertices: int, *,
                             one_based: bool) -> tuple[np.ndarray, str, np.ndarray]:
    """A source's ``keypoints`` and ``tri`` arrays, checked and made zero-based.

    Returns
    -------
    landmarks : (68,) int     landmark vertex indices
    landmark_note : str       ``file:key, convention``: where the metadata says they came from
    triangles : (T, 3) int    vertex indices of each triangle
    """
    landmark_key, landmark_raw = source.raw("keypoints")
    landmarks, convention = landmark_vertices(landmark_raw, num_vertices, one_based=one_based,
                                              where=source.where(landmark_key))
    tri_key, tri_raw = source.raw("tri")
    triangles = triangles_zero_based(tri_raw, num_vertices, one_based=one_based,
                                     where=source.where(tri_key))
    return landmarks, f"{source.path.name}:{landmark_key}, {convention}", triangles


def _vertex_count(source: SourceArrays, key: str, flat_mean: np.ndarray) -> int:
    if flat_mean.size % 3 or flat_mean.size < 3:
        raise ModelFileError(
            f"{source.where(key)}: interleaved x, y, z needs a length that is a multiple of 3, "
            f"got {flat_mean.size}"
        )
    return flat_mean.size // 3


def _check_layout_match(bfm_trimmed_mm: np.ndarray, layout_mm: np.ndarray,
                        layout: SourceArrays) -> None:
    bfm_points, layout_points = deinterleave(bfm_trimmed_mm), deinterleave(layout_mm)
    difference = (bfm_points - bfm_points.mean(axis=0)) - (layout_points - layout_points.mean(0))
    rms = float(np.sqrt(np.mean(np.sum(difference**2, axis=1))))
    width = float(np.ptp(layout_points[:, 0]))
    if rms > _LAYOUT_MATCH_TOLERANCE * width:
        raise ModelFileError(
            f"{layout.where(layout.key('mu_shape'))}: BFM gathered through trimIndex does not "
            f"match the layout's mean (RMS difference {rms:.3g} mm on a {width:.3g} mm wide "
            "face): wrong trim index or a different BFM"
        )


def _restrict_triangles(triangles: np.ndarray, kept: np.ndarray, num_vertices: int) -> np.ndarray:
    """Triangles ``(T', 3)`` whose three vertices are all in ``kept``, renumbered to it."""
    new_index = np.full(num_vertices, -1, dtype=np.int64)
    new_index[kept] = np.arange(kept.size)
    renumbered = new_index[triangles]
    return renumbered[np.all(renumbered >= 0, axis=1)]


def _metadata(source_format: str, files: dict, *, units: dict, landmarks: str,
              notes: list[str]) -> dict:
    return {
        "source_format": source_format,
        "source_files": {
            role: {"name": Path(path).name, "sha256": file_sha256(path)}
            for role, path in files.items() if path is not None
        },
        "source_length_units": units,
        "landmarks": landmarks,
        "conversion_notes": notes,
        "licence": _LICENCE_NOTE,
    }
