"""Pseudo-subjects from who the face is: the identity step between detection and fitting.

Faces without a subject are grouped (a GroupByKey) into blocks: the folder of their source
image and a bucket of their descriptor (:func:`fitting.identity_clusters.descriptor_bucket`).
Each block is clustered (:func:`fitting.identity_clusters.cluster_descriptors`); the faces of a
cluster get ``subject = "auto:<cluster id>"``, the cluster id a hash of its sorted face ids, so
the fit pools their identity like a given subject's. Faces in no cluster keep no subject and an
identity of their own. Given subjects, and video faces pooled by their track, pass through
untouched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath

import apache_beam as beam
import numpy as np

from fitting.identity_clusters import (
    ClusterSettings,
    cluster_descriptors,
    cluster_id,
    descriptor_bucket,
)
from pipelines.reading import content_key
from schemas.rows import AUTO_SUBJECT_PREFIX

# What the identity check did to a face that no row column says (a row holds no such flag):
# an ``auto:`` subject taken off (the row's subject is null, as for a face no cluster held),
# or a given subject kept on a face fitted alone (``--check-subjects``). Counted in
# ``stats.json`` under ``identity_check``.
AUTO_SUBJECT_REMOVED = "auto_subject_removed"
GIVEN_SUBJECT_FITTED_ALONE = "given_subject_fitted_alone"
CHECK_NOTES = (AUTO_SUBJECT_REMOVED, GIVEN_SUBJECT_FITTED_ALONE)


def is_automatic(subject: str | None) -> bool:
    """Whether a subject was made by this step (not given with the input)."""
    return bool(subject) and subject.startswith(AUTO_SUBJECT_PREFIX)


def image_folder(uri: str) -> str:
    """The folder of an image's URI; an archive member's folder inside its archive."""
    return posixpath.dirname(uri)


def identity_block(face, bucket_bits: int) -> tuple:
    """The block key of a face: ints (str keys hash differently in each worker process)."""
    folder = hashlib.sha256(image_folder(face.image.uri).encode("utf-8")).hexdigest()
    return (*content_key(folder), descriptor_bucket(face.descriptor, bucket_bits))


def _needs_subject(face) -> bool:
    # A video face's track already says who it is (pipelines.video.TrackFaces).
    return (not face.image.subject and face.track_id is None
            and face.descriptor is not None)


def assign_block(element, *, settings: ClusterSettings):
    """``(block, faces)`` -> the faces, those in a cluster with an ``auto:`` subject."""
    _, faces = element
    faces = sorted(faces, key=lambda face: face.id)
    clusters = cluster_descriptors(
        [face.id for face in faces], np.stack([face.descriptor for face in faces]),
        exclusive=[face.image.id for face in faces], settings=settings)
    subject_of = {}
    for members in clusters:
        name = AUTO_SUBJECT_PREFIX + cluster_id(members)
        subject_of.update((member, name) for member in members)
        beam.metrics.Metrics.counter("expnet_identity", "clusters").inc()
    beam.metrics.Metrics.counter("expnet_identity", "clustered_faces").inc(len(subject_of))
    for face in faces:
        subject = subject_of.get(face.id)
        if subject is None:
            yield face
        else:
            yield dataclasses.replace(face, image=dataclasses.replace(face.image,
                                                                      subject=subject))


class SubjectsFromFaces(beam.PTransform):
    """Faces -> the same faces, those without a subject given one where a cluster holds them.

    Parameters
    ----------
    settings : ClusterSettings
    bucket_bits : int   descriptor buckets per folder: ``2**bucket_bits`` (0: one block a
                        folder)
    """

    def __init__(self, settings: ClusterSettings, *, bucket_bits: int = 0):
        super().__init__()
        self.settings = settings
        self.bucket_bits = bucket_bits

    def expand(self, faces):
        # Two filters, not a Partition: Beam's Dask runner mixes multiple outputs.
        unknown = faces | "WithoutSubject" >> beam.Filter(_needs_subject)
        known = faces | "WithSubject" >> beam.Filter(lambda face: not _needs_subject(face))
        assigned = (unknown
                    | "KeyByIdentityBlock" >> beam.Map(
                        lambda face, bits: (identity_block(face, bits), face),
                        self.bucket_bits)
                    | "GroupForIdentity" >> beam.GroupByKey()
                    | "ClusterFaces" >> beam.FlatMap(assign_block, settings=self.settings))
        return (assigned, known) | "WithSubjects" >> beam.Flatten()
