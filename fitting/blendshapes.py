"""Named blendshape weights (ARKit-style units) from a 29-D expression code.

A model that carries named units (the open model: the 52 ARKit-style MakeHuman face units)
stores, per unit ``k``, its displacement field ``F_k`` only through two small products made
when the model is built (:mod:`fitting.models.build.open_model`)::

    G = F^T F          (U, U)      Gram matrix of the unit fields over the model's vertices
    C = F^T E          (U, K_exp)  unit fields against the sigma-unit expression basis E

with ``F`` (3V, U) and ``E`` (3V, K_exp) the flattened fields. The region mask of the issue is
the model's own vertex set (the open model is the face region already), every vertex weighted
equally. The expression code ``e`` gives the displacement ``D(e) = E e``; its weights solve the
box-constrained least squares::

    min_w ||F w - E e||^2   s.t.  0 <= w <= 1
  = min_w 1/2 w^T G w - w^T (C e)   (+ a constant)

a U-dimensional box QP per face, solved batched by ADMM, whose active set is then polished by
an exact solve and checked against the KKT conditions (:func:`solve_box_qp`); a fixed
iteration cap and no randomness, so the weights are deterministic. Everything that depends on
``G`` alone is computed once per model.
A unit that moves no vertex of the model (``tongueOut`` of the open model: the tongue is not
in the face mesh) has ``G_kk = 0`` and weight 0. The eye-look units move the eyelid skin only a
little (``G_kk`` about 80, against about 12 000 for ``eyeBlink``), so small leftover motion
around the eyes can give them large weights: 68 landmarks cannot see them
(studies/blendshape_recovery.py, RESULTS.md).

The inverse map, units to code, is the least-squares code of the units' field,
``e = (E^T E)^{-1} C^T w`` (:func:`blendshape_code`).
"""

from __future__ import annotations

import functools

import numpy as np

from fitting.models import MorphableModel

__all__ = ["blendshape_weights", "blendshape_code", "solve_box_qp", "has_blendshapes"]

MAX_ITERATIONS = 1000       # ADMM iterations at most
TOLERANCE = 1e-6            # KKT tolerance of the polished solution, in weight units
ADMM_BLOCK = 25             # ADMM iterations between polishing attempts
RELAXATION = 1.6            # over-relaxation of ADMM (1.5-1.8 is the usual range)


def has_blendshapes(model: MorphableModel) -> bool:
    """Whether ``model`` carries named units (``blendshape_names`` and the products)."""
    return model.blendshape_names is not None


def blendshape_weights(model: MorphableModel, expression: np.ndarray, *,
                       max_iterations: int = MAX_ITERATIONS,
                       tolerance: float = TOLERANCE) -> np.ndarray | None:
    """Weights in [0, 1] of the model's named units that best reproduce each expression.

    Parameters
    ----------
    model : MorphableModel
    expression : (K_exp,) or (B, K_exp)   codes in sigma units
    max_iterations : int                  cap on the projected-gradient iterations
    tolerance : float                     stop when no weight moves by more than this

    Returns
    -------
    weights : (U,) or (B, U) float64, or None
        ``None`` when the model has no named units; ``U = len(model.blendshape_names)``.
    """
    if not has_blendshapes(model):
        return None
    expression = np.asarray(expression, dtype=np.float64)
    if expression.ndim not in (1, 2) or expression.shape[-1] != model.expression_dim:
        raise ValueError(f"expression must be ({model.expression_dim},) or "
                         f"(B, {model.expression_dim}), got {expression.shape}")
    linear = expression.reshape(-1, model.expression_dim) @ model.blendshape_cross.T
    weights = solve_box_qp(model.blendshape_gram, linear, max_iterations=max_iterations,
                           tolerance=tolerance)
    return weights[0] if expression.ndim == 1 else weights


def blendshape_code(model: MorphableModel, weights: np.ndarray) -> np.ndarray:
    """The least-squares expression code of the units' combined displacement field.

    Parameters
    ----------
    model : MorphableModel   with named units
    weights : (U,) or (B, U)

    Returns
    -------
    expression : (K_exp,) or (B, K_exp) float64, sigma units
    """
    if not has_blendshapes(model):
        raise ValueError(f"model {model.model_id!r} has no named units")
    weights = np.asarray(weights, dtype=np.float64)
    count = len(model.blendshape_names)
    if weights.ndim not in (1, 2) or weights.shape[-1] != count:
        raise ValueError(f"weights must be ({count},) or (B, {count}), got {weights.shape}")
    basis = model.expression_basis.reshape(-1, model.expression_dim)
    right = weights.reshape(-1, count) @ model.blendshape_cross       # (B, K): E^T F w
    code = np.linalg.solve(basis.T @ basis, right.T).T
    return code[0] if weights.ndim == 1 else code


def solve_box_qp(gram: np.ndarray, linear: np.ndarray, *,
                 max_iterations: int = MAX_ITERATIONS,
                 tolerance: float = TOLERANCE) -> np.ndarray:
    """Batched ``min_w 1/2 w^T G w - w^T b`` subject to ``0 <= w <= 1``.

    ADMM (Boyd et al. 2011, section 5.2; over-relaxed) on the Jacobi-scaled problem, its
    linear step one product with the solution operator of ``G + rho I`` (from the eigenbasis of
    ``G``, once per ``G``) for the whole batch, in blocks of
    :data:`ADMM_BLOCK` iterations. After each block every unfinished row is *polished* as in
    OSQP (Stellato et al. 2020): its active set is guessed from the ADMM iterate, the
    free weights are solved exactly with the others at their bounds, and the row is done when
    that point satisfies the KKT conditions to ``tolerance``. A row that never passes keeps
    its last ADMM iterate (clipped to the box).

    Parameters
    ----------
    gram : (U, U) float             symmetric positive semi-definite ``G``
    linear : (B, U) float           one ``b`` per row
    max_iterations : int            cap on ADMM iterations
    tolerance : float               KKT tolerance, in weight units

    Returns
    -------
    weights : (B, U) float64        zero for units with ``G_kk = 0``
    """
    gram = np.asarray(gram, dtype=np.float64)
    linear = np.asarray(linear, dtype=np.float64)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be (U, U), got {gram.shape}")
    if linear.ndim != 2 or linear.shape[1] != gram.shape[0]:
        raise ValueError(f"linear must be (B, {gram.shape[0]}), got {linear.shape}")
    if max_iterations < 1 or tolerance <= 0:
        raise ValueError("max_iterations must be >= 1 and tolerance > 0")
    weights = np.zeros(linear.shape)
    moving, scale, scaled_gram, rho, step = _prepared(gram.tobytes(), gram.shape[0])
    if moving.size == 0 or linear.shape[0] == 0:
        return weights
    scaled_linear = linear[:, moving] / scale
    result = np.zeros_like(scaled_linear)
    todo = np.arange(len(scaled_linear))
    box = np.zeros_like(scaled_linear)
    dual = np.zeros_like(scaled_linear)
    for _ in range(0, max_iterations, ADMM_BLOCK):
        rhs, z, u = scaled_linear[todo], box[todo], dual[todo]
        constant = rhs @ step
        for _ in range(ADMM_BLOCK):
            x = constant + (rho * (z - u)) @ step
            relaxed = RELAXATION * x + (1.0 - RELAXATION) * z
            z = np.clip(relaxed + u, 0.0, scale)
            u = u + relaxed - z
        box[todo], dual[todo] = z, u
        result[todo] = z
        polished, done = _polish(scaled_gram, rhs, z, u, scale, tolerance)
        result[todo[done]] = polished[done]
        todo = todo[~done]
        if todo.size == 0:
            break
    weights[:, moving] = result / scale
    return weights


@functools.lru_cache(maxsize=8)
def _prepared(gram_bytes: bytes, size: int):
    """What the solver needs of ``G`` alone, once per distinct ``G`` (a model's products).

    Returns ``moving`` (n,) units with ``G_kk > 0``, ``scale`` (n,) their ``sqrt(G_kk)``, the
    Jacobi-scaled Gram (n, n), ADMM's ``rho`` and its step operator ``(G + rho I)^-1`` (n, n).
    """
    gram = np.frombuffer(gram_bytes, dtype=np.float64).reshape(size, size)
    moving = np.flatnonzero(np.diag(gram) > 0)
    if moving.size == 0:
        return moving, np.ones(0), np.zeros((0, 0)), 1.0, np.zeros((0, 0))
    # Jacobi scaling, u = d w: the box becomes [0, d] and G's diagonal 1.
    scale = np.sqrt(np.diag(gram)[moving])
    scaled_gram = gram[np.ix_(moving, moving)] / np.outer(scale, scale)
    eigenvalues, eigenvectors = np.linalg.eigh(scaled_gram)
    # rho at the geometric mean of the spectrum: the usual choice for a linear rate.
    rho = float(np.sqrt(max(eigenvalues[0], 1e-12 * eigenvalues[-1]) * eigenvalues[-1]))
    # The ADMM step solves (G + rho I) x = b + rho (z - u) for the batch at every iteration;
    # from G's eigendecomposition its solution operator is one (n, n) product, and
    # cond(G + rho I) = sqrt(cond G) (about 40 for the open model) keeps it accurate. The
    # polished result is solved directly; ADMM only finds the active set.
    step = (eigenvectors / (eigenvalues + rho)) @ eigenvectors.T
    return moving, scale, scaled_gram, rho, step


def _polish(gram, linear, point, dual, scale, tolerance):
    """Exact solve on the active set guessed from an ADMM iterate; which rows pass KKT.

    ``point`` (R, n) is on the scaled box ``[0, scale]``; a weight is taken as held at a bound
    when it sits there and its ADMM multiplier (``dual``) pushes outwards.
    """
    lower = (point <= 0.0) & (dual < 0.0)
    upper = (point >= scale) & (dual > 0.0)
    free = ~(lower | upper)
    fixed = np.where(upper, scale, 0.0)
    # Solve only the free block of each row: its free units first, padded to the batch's
    # largest free set with identity rows (solving padded 51-wide systems cost 3x more).
    order = np.argsort(~free, axis=1, kind="stable")[:, :max(int(free.sum(axis=1).max()), 1)]
    valid = np.take_along_axis(free, order, axis=1)
    system = gram[order[:, :, None], order[:, None, :]]
    system = np.where(valid[:, :, None] & valid[:, None, :], system, 0.0)
    diagonal = np.arange(order.shape[1])
    system[:, diagonal, diagonal] = np.where(valid, np.diag(gram)[order], 1.0)
    rhs = np.take_along_axis(linear - fixed @ gram, order, axis=1)
    block = np.linalg.solve(system, np.where(valid, rhs, 0.0)[:, :, None])[:, :, 0]
    solved = fixed.copy()
    rows = np.arange(len(solved))[:, None]
    solved[rows, order] = np.where(valid, block, fixed[rows, order])
    gradient = solved @ gram - linear
    slack = tolerance * scale
    feasible = np.all((solved >= -slack) & (solved <= scale + slack), axis=1)
    # KKT: free weights have zero gradient, lower-held ones a non-negative, upper-held ones
    # a non-positive gradient (scaled units, so compared with the tolerance times scale).
    stationary = np.all(np.where(free, np.abs(gradient), 0.0) <= slack, axis=1)
    signs = np.all(np.where(lower, gradient >= -slack, True)
                   & np.where(upper, gradient <= slack, True), axis=1)
    return np.clip(solved, 0.0, scale), feasible & stationary & signs
