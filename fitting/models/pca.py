"""PCA of random linear combinations of morph targets, without materialising the samples.

A sample face is ``d = w @ T``: weights ``w (P,)`` drawn at random, targets ``T (P, 3V)``
(flattened displacement fields). For ``N`` samples ``D = W @ T`` the second moment about the
base mesh is ``D^T D / N = T^T (W^T W / N) T``, so its principal components follow from the
small ``(P, P)`` weight moment: with ``W^T W / N = L L^T``, the left singular vectors of
``T^T L`` are the components and its singular values the RMS scores. This is exactly the PCA
of the ``N`` sampled faces, at the cost of a ``(3V, P)`` SVD, so ``N`` can be large.

The PCA is about the base mesh (uncentred): a face with no target applied has all scores 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class TargetPCA:
    """Principal components of sampled target combinations.

    Attributes
    ----------
    components : (3V, K) float64   orthonormal columns, sign fixed (largest entry positive)
    score_rms : (K,) float64       root-mean-square score of the samples on each component;
                                   with zero-mean weights this is the standard deviation
    kept_energy : float            share of the samples' second moment the K components keep
    """

    components: np.ndarray
    score_rms: np.ndarray
    kept_energy: float

    def basis(self, num_vertices: int) -> np.ndarray:
        """The sigma-unit basis ``(V, 3, K)``: component ``k`` times ``score_rms[k]``."""
        scaled = self.components * self.score_rms
        return scaled.reshape(num_vertices, 3, -1)


def target_pca(targets: np.ndarray, weights: np.ndarray, *, num_components: int) -> TargetPCA:
    """PCA of the faces ``weights @ targets`` about the zero displacement.

    Parameters
    ----------
    targets : (P, 3V)        flattened displacement field of each target
    weights : (N, P)         one row of target weights per sampled face
    num_components : int     components to keep, at most P

    Returns
    -------
    TargetPCA
    """
    targets = np.asarray(targets, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if targets.ndim != 2 or weights.ndim != 2 or weights.shape[1] != targets.shape[0]:
        raise ValueError(f"expected targets (P, 3V) and weights (N, P), got {targets.shape} "
                         f"and {weights.shape}")
    if not 0 < num_components <= targets.shape[0]:
        raise ValueError(f"num_components must lie in [1, {targets.shape[0]}], "
                         f"got {num_components}")
    moment = weights.T @ weights / len(weights)
    eigenvalues, eigenvectors = np.linalg.eigh(moment)
    factor = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))        # moment = L L^T
    left, singular, _ = np.linalg.svd(targets.T @ factor, full_matrices=False)
    total = float(np.sum(singular ** 2))
    if total <= 0:
        raise ValueError("the sampled faces have no displacement: targets or weights are zero")
    components = left[:, :num_components]
    largest = np.argmax(np.abs(components), axis=0)
    signs = np.sign(components[largest, np.arange(num_components)])
    return TargetPCA(components=components * signs,
                     score_rms=singular[:num_components].copy(),
                     kept_energy=float(np.sum(singular[:num_components] ** 2) / total))
