"""Beam's Dask runner with a bounded partition count: a Flatten keeps its widest input's count.

Beam translates ``Flatten`` to ``dask.bag.concat``, whose partitions are the sum of its
inputs', and every later step (a GroupByKey keeps its input's count) runs once per
partition. Every Flatten in ``expnet generate`` (failures of four stages, seven streams of
accounting events, the outputs gathered for the manifest) multiplies the count. For 200 faces
in 13 partitions of 16 the last step had 278 partitions and the graph 11 620 tasks, and the
run spent ten times the CPU of one process (RESULTS.md, "Dask partitions"). With the
translation here, a Flatten merges adjacent partitions back to its widest input's count:
no shuffle, the same elements, and so the same dataset.
"""

from __future__ import annotations

import functools

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

DASK_RUNNER_NAMES = ("DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner")


def uses_dask(options: PipelineOptions) -> bool:
    """Whether ``options`` run on Beam's Dask runner."""
    runner = options.view_as(StandardOptions).runner
    return isinstance(runner, str) and runner in DASK_RUNNER_NAMES


def bound_flatten_partitions() -> None:
    """Make Beam's Dask runner translate Flatten with a bounded partition count (idempotent).

    Changes the translation table of ``apache_beam.runners.dask`` in this process: only the
    launching process builds the Dask graph, so workers need nothing.
    """
    from apache_beam.runners.dask import transform_evaluator
    from apache_beam.runners.dask.overrides import _Flatten

    transform_evaluator.TRANSLATIONS[_Flatten] = _bounded_flatten()


@functools.cache
def _bounded_flatten() -> type:
    """The translation class, made on first use: importing this module needs no Dask."""
    from apache_beam.runners.dask.transform_evaluator import Flatten

    class BoundedFlatten(Flatten):
        """``concat`` of the inputs, then adjacent partitions merged to the widest input's."""

        def apply(self, input_bag, side_inputs=None):
            flattened = super().apply(input_bag, side_inputs)
            widest = max((bag.npartitions for bag in input_bag), default=1)
            if flattened.npartitions <= widest:
                return flattened
            return flattened.repartition(npartitions=widest)

    return BoundedFlatten
