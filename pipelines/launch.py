"""Handing a built pipeline to its runner, and waiting for the end.

Beam's ``Pipeline.run`` first tests, for a runner outside the Fn API (Beam's Dask runner is
one), that the pipeline survives a round trip through its runner-API form: it pickles and
compresses every transform, ``Create``'s elements included, and rebuilds the pipeline from
that before running the copy. The round trip checks Beam's translation, not the job, and the
launcher pays it while the cluster waits: 2.7 s at 12 000 inputs, growing with the inputs
(RESULTS.md, "The launcher, and where a Dask run waits"). On Dask a pipeline without side
inputs runs as it was built. One with side inputs keeps the round trip: given the pipeline as
built, Beam's Dask runner hands a side input's placeholder (an ``AsList``) to the function
instead of its values (``combiners.ToList`` in ``expnet synth`` failed so).
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.pipeline import PipelineVisitor

from pipelines.dask_partitions import translate_for_dask, uses_dask


def run_to_end(pipeline: beam.Pipeline) -> None:
    """Run ``pipeline`` and wait until it has finished; raises what the run raised.

    On Dask, first installs this project's translations of Beam's steps
    (:func:`pipelines.dask_partitions.translate_for_dask`). A subclass of ``beam.Pipeline``
    (Beam's ``TestPipeline``) keeps its own ``run``.
    """
    on_dask = uses_dask(pipeline.options)
    if on_dask:
        translate_for_dask()
    if on_dask and type(pipeline) is beam.Pipeline and not has_side_inputs(pipeline):
        result = pipeline.run(test_runner_api=False)
    else:
        result = pipeline.run()
    result.wait_until_finish()


def has_side_inputs(pipeline: beam.Pipeline) -> bool:
    """Whether any step of ``pipeline`` reads a side input."""

    class SideInputFinder(PipelineVisitor):
        found = False

        def visit_transform(self, transform_node) -> None:
            if transform_node.side_inputs:
                self.found = True

    finder = SideInputFinder()
    pipeline.visit(finder)
    return finder.found
