"""The regularised least-squares solve, pooled per group, and its Cholesky systems."""

from __future__ import annotations

import numpy as np
import pytest

from fitting.solve import solve_pooled, solve_spd


def _normal_equations(designs, observations):
    """``A^T A`` and ``A^T y`` of each face's problem."""
    return (np.einsum("bmk,bml->bkl", designs, designs),
            np.einsum("bmk,bm->bk", designs, observations))


def _dense_pooled_solution(designs, observations, groups, num_shared, precision):
    """The pooled problem written out as one big least-squares system."""
    num_groups = groups.max() + 1
    batch, rows, size = designs.shape
    own = size - num_shared
    columns = num_groups * num_shared + batch * own
    big = np.zeros((batch * rows, columns))
    for face in range(batch):
        block = slice(face * rows, (face + 1) * rows)
        shared_cols = slice(groups[face] * num_shared, (groups[face] + 1) * num_shared)
        own_start = num_groups * num_shared + face * own
        big[block, shared_cols] = designs[face][:, :num_shared]
        big[block, own_start:own_start + own] = designs[face][:, num_shared:]
    prior = np.concatenate([np.tile(precision[:num_shared], num_groups),
                            np.tile(precision[num_shared:], batch)])
    stacked = np.vstack([big, np.diag(np.sqrt(prior))])
    target = np.concatenate([observations.reshape(-1), np.zeros(columns)])
    solution = np.linalg.lstsq(stacked, target, rcond=None)[0]
    shared = solution[:num_groups * num_shared].reshape(num_groups, num_shared)
    return shared, solution[num_groups * num_shared:].reshape(batch, own)


@pytest.mark.parametrize("groups", [[0, 1, 1, 2, 2, 2], [2, 0, 1, 0, 2, 2], [0, 0, 0, 0, 0, 0],
                                    [0, 1, 2, 3, 4, 5]])
def test_solve_pooled_equals_the_dense_joint_solution(groups):
    rng = np.random.default_rng(2)
    groups = np.array(groups)
    designs = rng.normal(size=(6, 12, 7))
    observations = rng.normal(size=(6, 12))
    precision = np.concatenate([np.full(3, 0.5), np.full(4, 2.0)])
    hessian, gradient = _normal_equations(designs, observations)
    shared, own = solve_pooled(hessian, gradient, groups, num_shared=3, precision=precision)
    expected_shared, expected_own = _dense_pooled_solution(designs, observations, groups, 3,
                                                           precision)
    # The Schur complement is an exact elimination: agreement to rounding.
    np.testing.assert_allclose(shared, expected_shared, atol=1e-10)
    np.testing.assert_allclose(own, expected_own, atol=1e-10)


def test_solve_spd_matches_lu_and_falls_back_on_indefinite_systems():
    rng = np.random.default_rng(5)
    design = rng.normal(size=(4, 30, 6))
    matrices = np.matmul(np.swapaxes(design, 1, 2), design) + np.eye(6)
    right_hand_sides = rng.normal(size=(4, 6, 2))
    # Cholesky and LU solve the same well-conditioned systems: equal to rounding.
    np.testing.assert_allclose(solve_spd(matrices, right_hand_sides),
                               np.linalg.solve(matrices, right_hand_sides), atol=1e-12)
    matrices[2] = np.diag([1.0, -2.0, 3.0, 1.0, 1.0, 1.0])  # symmetric, not positive definite
    solution = solve_spd(matrices, right_hand_sides[:, :, 0])
    np.testing.assert_allclose(solution[2], right_hand_sides[2, :, 0] / np.diag(matrices[2]),
                               atol=1e-12)  # the LU fallback solves it exactly
    with pytest.raises(ValueError, match=r"\(B, K, K\)"):
        solve_spd(np.zeros((2, 3, 4)), np.zeros((2, 3)))


def test_solve_spd_in_place_falls_back_with_the_original_matrix():
    rng = np.random.default_rng(6)
    eigenvalues = np.array([2.0, -1.0, 0.5, 3.0, 1.5])
    basis = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    indefinite = (basis * eigenvalues) @ basis.T  # symmetric, dense, not positive definite
    design = rng.normal(size=(20, 5))
    matrices = np.stack([design.T @ design + np.eye(5), indefinite])
    right_hand_sides = rng.normal(size=(2, 5))
    expected = np.linalg.solve(matrices, right_hand_sides[..., None])[..., 0]
    kept = matrices.copy()
    # Without overwrite the input is left alone; Cholesky and LU agree to rounding.
    np.testing.assert_allclose(solve_spd(matrices, right_hand_sides), expected, atol=1e-12)
    np.testing.assert_array_equal(matrices, kept)
    # In place, the failed Cholesky has written over half of the indefinite matrix; the LU
    # fallback must see the original: agreement to rounding.
    solution = solve_spd(matrices, right_hand_sides, overwrite_matrices=True)
    np.testing.assert_allclose(solution, expected, atol=1e-12)
