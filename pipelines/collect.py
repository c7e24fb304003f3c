"""Gathering a whole PCollection into one list without a side input.

Beam's ``CombineGlobally`` (and so ``combiners.ToList``, ``ToDict``, ``Count.Globally``)
injects its default for an empty input through a side input. Beam's Dask runner embeds a side
input's whole upstream graph in every task that reads it and computes that graph again inside
the task: the pipeline ran several times over, and the client sent graphs of hundreds of MiB.
:class:`ToOneList` gets the same result from one GroupByKey on an int key and a seed element.
"""

from __future__ import annotations

import apache_beam as beam


class _Seed:
    """Marks the seed element; compared by type, as pickling makes new instances."""


def _without_seed(keyed) -> list:
    _, values = keyed
    return [value for value in values if not isinstance(value, _Seed)]


class ToOneList(beam.PTransform):
    """A PCollection -> a PCollection of exactly one list of all its elements (any order).

    An empty input gives one empty list, as ``combiners.ToList`` does.
    """

    def expand(self, pcoll):
        seed = pcoll.pipeline | "Seed" >> beam.Create([(0, _Seed())])
        keyed = pcoll | "KeyAllAlike" >> beam.Map(lambda element: (0, element))
        return ((seed, keyed)
                | "WithSeed" >> beam.Flatten()
                | "GroupAll" >> beam.GroupByKey()
                | "DropSeed" >> beam.Map(_without_seed))
