"""Clusters of face descriptors that would rather split a person than merge two.

Faces of one block (one folder, one descriptor bucket: :func:`descriptor_bucket`) are joined
by the edges of a k-nearest-neighbour graph that are mutual (each face among the other's ``k``
nearest) and shorter than ``threshold``. Edges are taken shortest first, as in single linkage,
but a merge happens only when the joined cluster keeps every pair of members within
``max_diameter`` (complete linkage), stays at most ``max_cluster_size`` faces, and holds no two
faces of one image (``exclusive``). A chain of look-alikes therefore stops growing where its
ends stop looking alike. Last, a cluster is kept only if it stands out: its nearest outsider
at least ``min_separation`` times its diameter away. Weak evidence leaves a face alone: a
singleton, which the caller fits with an identity of its own.

The neighbours come from an exact search for blocks up to ``exact_up_to`` faces and from
faiss's HNSW graph above that (no O(n^2) over a large block). Results are deterministic: faces
are sorted by id first and ties broken by position, so the same faces give the same clusters
in any order, and faiss runs single-threaded on that order.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Hashable, Sequence

import numpy as np

__all__ = ["ClusterSettings", "cluster_descriptors", "cluster_id", "descriptor_bucket",
           "nearest_neighbours"]

# Seed of the hyperplanes of :func:`descriptor_bucket`; changing it changes every bucket.
BUCKET_SEED = 17


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    """How tight the clusters are; the defaults are for dlib's ResNet descriptor.

    Attributes
    ----------
    threshold : float        longest edge (Euclidean descriptor distance) that joins faces.
        dlib calls faces within 0.6 one person; 0.4 leaves a margin, since a false merge
        costs labels more than a missed one (the issue's set A put ten people within 0.5).
    max_diameter : float     longest distance allowed between any two members of a cluster
    neighbours : int         k of the k-nearest-neighbour graph
    max_cluster_size : int   most faces in one cluster
    min_separation : float   a cluster is kept only if its nearest outsider is at least this
                             many times its diameter away: in a crowd where everybody is
                             near everybody (look-alikes, a descriptor that fails on the
                             faces) no cluster stands out, and none is kept. 1.2 keeps
                             the bundled photos' clusters (1.85) and leaves 40 renders of
                             different people unclustered (benchmarks/RESULTS.md)
    exact_up_to : int        blocks up to this many faces use an exact search, larger ones
                             faiss's HNSW graph
    """

    threshold: float = 0.4
    max_diameter: float = 0.5
    neighbours: int = 8
    max_cluster_size: int = 64
    min_separation: float = 1.2
    exact_up_to: int = 4096

    def __post_init__(self):
        if not 0 < self.threshold <= self.max_diameter:
            raise ValueError("need 0 < threshold <= max_diameter, got "
                             f"{self.threshold} and {self.max_diameter}")
        if self.neighbours < 1 or self.max_cluster_size < 2 or self.exact_up_to < 1:
            raise ValueError("need neighbours >= 1, max_cluster_size >= 2, exact_up_to >= 1")
        if self.min_separation < 0:
            raise ValueError(f"need min_separation >= 0, got {self.min_separation}")


def cluster_id(member_ids: Sequence[str]) -> str:
    """A stable name of a cluster: the first 16 hex digits of sha256 of its sorted ids."""
    joined = "\n".join(sorted(member_ids)).encode("utf-8")
    return hashlib.sha256(joined).hexdigest()[:16]


def descriptor_bucket(descriptor: np.ndarray, bits: int) -> int:
    """Which of ``2**bits`` buckets a descriptor falls in: the signs of fixed projections.

    Random hyperplanes through the origin (seeded, so every worker draws the same ones) cut
    descriptor space into cells; near descriptors mostly share a cell. A person cut by a
    hyperplane is split, never merged with anyone, so buckets only trade recall for bounded
    blocks.

    Parameters
    ----------
    descriptor : (D,) float
    bits : int     0 puts everything in bucket 0
    """
    descriptor = np.asarray(descriptor, dtype=np.float64)
    if descriptor.ndim != 1:
        raise ValueError(f"expected a descriptor of shape (D,), got {descriptor.shape}")
    if bits == 0:
        return 0
    planes = np.random.default_rng(BUCKET_SEED).standard_normal((bits, descriptor.shape[0]))
    signs = planes @ descriptor > 0
    return int(np.sum(signs.astype(np.int64) << np.arange(bits)))


def nearest_neighbours(descriptors: np.ndarray, k: int, *,
                       exact_up_to: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other points of every point (fewer when there are fewer points).

    Parameters
    ----------
    descriptors : (N, D) float
    k : int
    exact_up_to : int   exact search up to this many points, faiss HNSW above

    Returns
    -------
    indices : (N, k') int64      neighbours nearest first, ties by index; ``k' = min(k, N-1)``
    distances : (N, k') float64  their Euclidean distances
    """
    points = np.asarray(descriptors, dtype=np.float64)
    count = len(points)
    k = min(k, count - 1)
    if k <= 0:
        return np.zeros((count, 0), np.int64), np.zeros((count, 0))
    if count <= exact_up_to:
        indices = _exact_neighbours(points, k)
    else:
        indices = _hnsw_neighbours(points, k)
    distances = np.linalg.norm(points[indices] - points[:, None], axis=2)
    return indices, distances


def _exact_neighbours(points: np.ndarray, k: int, rows_per_step: int = 1024) -> np.ndarray:
    norms = np.sum(points ** 2, axis=1)
    found = []
    for start in range(0, len(points), rows_per_step):
        block = points[start:start + rows_per_step]
        squared = norms[start:start + len(block), None] + norms[None] - 2 * block @ points.T
        squared[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        # lexsort: by distance, ties by index (the sorted order), so equal inputs agree.
        columns = np.broadcast_to(np.arange(len(points)), squared.shape)
        order = np.lexsort((columns, squared), axis=1)
        found.append(order[:, :k])
    return np.concatenate(found)


def _hnsw_neighbours(points: np.ndarray, k: int) -> np.ndarray:
    import faiss

    # One thread: faiss's graph depends on insertion order, which multi-threaded builds vary.
    faiss.omp_set_num_threads(1)
    index = faiss.IndexHNSWFlat(points.shape[1], 32)
    index.hnsw.efConstruction = 80
    index.hnsw.efSearch = max(64, 2 * k)
    index.add(np.ascontiguousarray(points, dtype=np.float32))
    _, found = index.search(np.ascontiguousarray(points, dtype=np.float32), k + 1)
    rows = []
    for own, candidates in enumerate(found):
        others = [int(index) for index in candidates if index != own and index >= 0]
        rows.append((others + [own] * k)[:k])  # self-padding is never an edge below
    return np.asarray(rows, dtype=np.int64)


def cluster_descriptors(ids: Sequence[str], descriptors: np.ndarray, *,
                        exclusive: Sequence[Hashable] | None = None,
                        settings: ClusterSettings = ClusterSettings()) -> list[tuple[str, ...]]:
    """Clusters of at least two faces; faces in none are left to per-image identity.

    Parameters
    ----------
    ids : (N,) sequence of str     unique face ids
    descriptors : (N, D) float     face descriptors (finite)
    exclusive : (N,) hashables, optional
        Faces with equal values never share a cluster (e.g. the faces of one image).
    settings : ClusterSettings

    Returns
    -------
    list of tuple of str   each cluster's ids sorted; clusters sorted by their first id

    Raises
    ------
    ValueError   when shapes disagree, ids repeat or descriptors are not finite
    """
    points = np.asarray(descriptors, dtype=np.float64)
    ids = [str(face_id) for face_id in ids]
    if points.ndim != 2 or points.shape[0] != len(ids):
        raise ValueError(f"expected descriptors of shape ({len(ids)}, D), got {points.shape}")
    if len(set(ids)) != len(ids):
        raise ValueError("face ids must be unique")
    if not np.all(np.isfinite(points)):
        raise ValueError("descriptors must be finite")
    if exclusive is not None and len(exclusive) != len(ids):
        raise ValueError(f"expected {len(ids)} exclusive values, got {len(exclusive)}")
    order = sorted(range(len(ids)), key=ids.__getitem__)
    points = points[order]
    sorted_ids = [ids[index] for index in order]
    groups = None if exclusive is None else [exclusive[index] for index in order]
    indices, distances = nearest_neighbours(points, settings.neighbours,
                                            exact_up_to=settings.exact_up_to)
    members = _link(points, _mutual_edges(indices, distances, settings), groups, settings)
    clusters = [tuple(sorted_ids[index] for index in sorted(group))
                for group in members
                if len(group) > 1 and _stands_out(points, group, indices, distances,
                                                  settings.min_separation)]
    return sorted(clusters)


def _mutual_edges(indices: np.ndarray, distances: np.ndarray,
                  settings: ClusterSettings) -> list[tuple]:
    """``(distance, i, j)`` with ``i < j`` mutual neighbours closer than the threshold."""
    neighbours = [set(row.tolist()) for row in indices]
    edges = []
    for i, (row, row_distances) in enumerate(zip(indices, distances)):
        for j, distance in zip(row.tolist(), row_distances.tolist()):
            if i < j and i in neighbours[j] and distance < settings.threshold:
                edges.append((distance, i, j))
    return sorted(edges)


def _stands_out(points: np.ndarray, group: list, indices: np.ndarray, distances: np.ndarray,
                min_separation: float) -> bool:
    """Whether the nearest face outside ``group`` is ``min_separation`` diameters away.

    The outsider is looked for in the members' neighbour lists; a member whose list holds
    only members counts its farthest neighbour instead, a lower bound of its nearest
    outsider, so a doubt keeps a cluster out rather than in. A block with no outsider at all
    (its lists hold every face) leaves the cluster to the other rules.
    """
    inside = set(group)
    whole_block = indices.shape[1] == len(points) - 1
    separation = np.inf
    for member in group:
        outside = [distance for index, distance in zip(indices[member], distances[member])
                   if index not in inside]
        if outside:
            separation = min(separation, outside[0])
        elif not whole_block:
            separation = min(separation, distances[member][-1])
    diameter = np.linalg.norm(points[group][:, None] - points[group][None], axis=2).max()
    return bool(separation >= min_separation * diameter)


def _link(points: np.ndarray, edges: list[tuple], groups: list | None,
          settings: ClusterSettings) -> list[list[int]]:
    """Shortest edges first, merging two clusters only when the result stays tight."""
    owner = list(range(len(points)))
    members = {index: [index] for index in range(len(points))}
    for _, i, j in edges:
        first, second = owner[i], owner[j]
        if first == second:
            continue
        joined = members[first] + members[second]
        if len(joined) > settings.max_cluster_size:
            continue
        if groups is not None and len({groups[index] for index in joined}) < len(joined):
            continue
        across = np.linalg.norm(points[members[first]][:, None]
                                - points[members[second]][None], axis=2)
        if across.max() > settings.max_diameter:
            continue
        keep, drop = min(first, second), max(first, second)
        members[keep] = joined
        for index in members.pop(drop):
            owner[index] = keep
    return [members[key] for key in sorted(members)]
