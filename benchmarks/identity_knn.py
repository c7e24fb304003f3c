"""Exact against faiss HNSW neighbours for the identity clusters: seconds and recall.

    .venv/bin/python -m benchmarks.identity_knn [--sizes 2000 4096 20000 50000]

Synthetic 128-D descriptors shaped like dlib's (people on a sphere, images of one person
about 0.3 apart, 8 images a person). For each block size: seconds of the exact search and of
faiss's HNSW graph (one thread, as ``fitting.identity_clusters`` runs it), the share of the
exact 8 nearest neighbours HNSW finds, and seconds of the whole ``cluster_descriptors`` with
its default switch (exact up to 4096 faces). The exact search is skipped above 20000 faces
(its cost grows with the square of the block).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

from fitting.identity_clusters import cluster_descriptors, nearest_neighbours

NEIGHBOURS = 8
EXACT_LIMIT = 20000


def descriptors(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    people = max(count // 8, 1)
    centres = rng.standard_normal((people, 128))
    centres *= 0.6 / np.linalg.norm(centres, axis=1, keepdims=True)
    return centres[np.arange(count) % people] + rng.normal(0.0, 0.3 / 16, (count, 128))


def timed(work):
    """``work()`` and its seconds."""
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4096, 20000, 50000])
    options = parser.parse_args(argv)
    print("| faces | exact s | HNSW s | HNSW recall@8 | cluster_descriptors s |")
    print("|---|---|---|---|---|")
    for size in options.sizes:
        points = descriptors(size)
        # exact_up_to=0 forces the HNSW graph, exact_up_to=size the exact search.
        (approximate, _), hnsw_seconds = timed(
            partial(nearest_neighbours, points, NEIGHBOURS, exact_up_to=0))
        if size <= EXACT_LIMIT:
            (exact, _), exact_seconds = timed(
                partial(nearest_neighbours, points, NEIGHBOURS, exact_up_to=size))
            found = np.mean([len(set(a) & set(e)) / NEIGHBOURS
                             for a, e in zip(approximate.tolist(), exact.tolist())])
            exact_text, recall_text = f"{exact_seconds:.2f}", f"{found:.4f}"
        else:
            exact_text = recall_text = "(skipped)"
        ids = [f"{index:08d}" for index in range(size)]
        _, cluster_seconds = timed(partial(cluster_descriptors, ids, points))
        print(f"| {size} | {exact_text} | {hnsw_seconds:.2f} | {recall_text} | "
              f"{cluster_seconds:.2f} |")


if __name__ == "__main__":
    main()
