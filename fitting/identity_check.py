"""Check a shared identity against the fit itself: pool only faces that agree.

The images of one person share one face shape, so fitting them with one identity should cost
each image little: its landmarks were explained by its own identity and can be explained,
almost as well, by the shared one. A face of somebody else, pooled by mistake, cannot: its
residual rises. :func:`fit_with_identity_check` fits every face alone and every group pooled,
takes the face whose residual rose most, if by more than ``max_face_increase`` (inter-ocular
units, like ``FitBatch.residual``), out of its group, refits the rest, and after ``rounds`` rounds
rejects a group that still disagrees, or whose faces rise by more than ``max_mean_increase``
on average: its faces keep identities of their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence

import numpy as np

from fitting.fitter import FitBatch, fit_landmarks
from fitting.models import MorphableModel

__all__ = ["CheckedFit", "fit_with_identity_check"]

# Residual rises (fraction of the inter-ocular distance), measured on dlib landmarks of
# synthetic renders (benchmarks/RESULTS.md, "Identity pooling"): in groups of 2 to 8 images of
# one person the mean rise is below 0.007 for 95 % of groups and a single face's rise below
# 0.012; groups that mix two people rise by a median 0.006 (pairs 0.0034) to 0.011 (largest
# face). dlib's landmark noise keeps the two close: the check catches gross mistakes, not
# near twins.
MAX_FACE_INCREASE = 0.012
MAX_MEAN_INCREASE = 0.007


@dataclasses.dataclass(frozen=True)
class CheckedFit:
    """A fit after the identity check.

    Attributes
    ----------
    fit : FitBatch                  the final fit: pooled groups that passed, the rest alone
    pooled : (B,) bool              the face's identity is shared with other faces
    residual_increase : (B,) float  pooled minus per-image residual in the first pooled fit
                                    (0 for faces alone from the start)
    grouped : (B,) bool             the face was in a group of two or more before the check
                                    (a subject shared with another face, and a per-image fit)
    """

    fit: FitBatch
    pooled: np.ndarray
    residual_increase: np.ndarray
    grouped: np.ndarray

    @property
    def taken_out(self) -> np.ndarray:
        """(B,) bool: faces the check took out of their group, now fitted alone."""
        return self.grouped & ~self.pooled


def fit_with_identity_check(
    model: MorphableModel,
    landmarks_2d: np.ndarray,
    *,
    subject_ids: Sequence[Hashable | None],
    landmark_weights: np.ndarray | None = None,
    max_face_increase: float = MAX_FACE_INCREASE,
    max_mean_increase: float = MAX_MEAN_INCREASE,
    rounds: int = 3,
) -> CheckedFit:
    """Fit with identities pooled by ``subject_ids`` where the fit agrees with the pooling.

    Parameters
    ----------
    model : MorphableModel
    landmarks_2d : (B, 68, 2) float     as :func:`fitting.fitter.fit_landmarks`
    subject_ids : (B,) hashables or None   None: the face is fitted alone
    landmark_weights : (B, 68) float, optional
    max_face_increase : float > 0   largest rise of one face's residual in its group; in all
                                    but the last round the face that rose most of those above
                                    it leaves its group
    max_mean_increase : float > 0   largest mean rise over a group's faces
    rounds : int >= 1               pooled fits; after the last, a group with a face above
                                    ``max_face_increase`` or a mean above
                                    ``max_mean_increase`` is rejected whole

    Returns
    -------
    CheckedFit
    """
    landmarks = np.asarray(landmarks_2d, dtype=np.float64)
    if len(subject_ids) != len(landmarks):
        raise ValueError(f"expected {len(landmarks)} subject ids, got {len(subject_ids)}")
    if min(max_face_increase, max_mean_increase) <= 0 or rounds < 1:
        raise ValueError("need positive increase limits and rounds >= 1")
    alone = fit_landmarks(model, landmarks, landmark_weights=landmark_weights)
    groups = _group_numbers(subject_ids, alone.failure)
    grouped = groups >= 0
    first_increase = np.zeros(len(landmarks))
    for round_number in range(rounds):
        if not np.any(groups >= 0):
            return CheckedFit(alone, groups >= 0, first_increase, grouped)
        pooled = fit_landmarks(model, landmarks, subject_ids=_fit_ids(groups),
                               landmark_weights=landmark_weights)
        increase = np.where(groups >= 0, pooled.residual - alone.residual, 0.0)
        if round_number == 0:
            first_increase = increase
        leaving = (groups >= 0) & (increase > max_face_increase)
        if round_number < rounds - 1 and leaving.any():
            # Only the worst face of each group leaves: a stranger raises its group-mates'
            # residuals too, which fall back once it is gone.
            groups = _drop_small(np.where(_worst_of_each_group(groups, increase, leaving), -1,
                                          groups))
            continue
        rejected = _rejected_groups(groups, increase, leaving, max_mean_increase)
        if not rejected.size:
            return CheckedFit(pooled, groups >= 0, first_increase, grouped)
        groups = _drop_small(np.where(np.isin(groups, rejected), -1, groups))
    if not np.any(groups >= 0):
        return CheckedFit(alone, groups >= 0, first_increase, grouped)
    final = fit_landmarks(model, landmarks, subject_ids=_fit_ids(groups),
                          landmark_weights=landmark_weights)
    return CheckedFit(final, groups >= 0, first_increase, grouped)


def _worst_of_each_group(groups: np.ndarray, increase: np.ndarray,
                         leaving: np.ndarray) -> np.ndarray:
    """(B,) bool: in each group with faces over the limit, the face that rose most."""
    worst = np.zeros(len(groups), dtype=bool)
    for value in np.unique(groups[leaving]):
        members = np.flatnonzero(groups == value)
        worst[members[np.argmax(increase[members])]] = True
    return worst


def _rejected_groups(groups: np.ndarray, increase: np.ndarray, leaving: np.ndarray,
                     max_mean_increase: float) -> np.ndarray:
    """Group numbers with a face above the face limit or a mean above the mean limit."""
    values = np.unique(groups[groups >= 0])
    means = np.array([increase[groups == value].mean() for value in values])
    return values[(means > max_mean_increase) | np.isin(values, groups[leaving])]


def _group_numbers(subject_ids: Sequence, failure: np.ndarray) -> np.ndarray:
    """(B,) int: a group number per face in a group of two or more, else -1."""
    numbers = {}
    groups = np.full(len(subject_ids), -1, dtype=np.int64)
    for index, subject in enumerate(subject_ids):
        if subject is not None and failure[index] is None:
            groups[index] = numbers.setdefault(subject, len(numbers))
    return _drop_small(groups)


def _drop_small(groups: np.ndarray) -> np.ndarray:
    values, counts = np.unique(groups[groups >= 0], return_counts=True)
    return np.where(np.isin(groups, values[counts < 2]), -1, groups)


def _fit_ids(groups: np.ndarray) -> list:
    """Subject ids for ``fit_landmarks``: the group, or the face's own index when alone."""
    return [("group", int(group)) if group >= 0 else ("alone", index)
            for index, group in enumerate(groups)]
