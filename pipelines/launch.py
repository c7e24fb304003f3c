"""Handing a built pipeline to its runner, and waiting for the end.

Beam's ``Pipeline.run`` first tests, for a runner outside the Fn API (Beam's Dask runner is
one), that the pipeline survives a round trip through its runner-API form: it pickles and
compresses every transform, ``Create``'s elements included, and rebuilds the pipeline from
that before running the copy. The round trip checks Beam's translation, not the job, and the
launcher pays it while the cluster waits: 2.7 s at 12 000 inputs, growing with the inputs
(RESULTS.md, "The launcher, and where a Dask run waits"). On Dask the pipeline runs as it
was built.
"""

from __future__ import annotations

import apache_beam as beam

from pipelines.dask_partitions import uses_dask


def run_to_end(pipeline: beam.Pipeline) -> None:
    """Run ``pipeline`` and wait until it has finished; raises what the run raised.

    A subclass of ``beam.Pipeline`` (Beam's ``TestPipeline``) keeps its own ``run``.
    """
    if type(pipeline) is beam.Pipeline and uses_dask(pipeline.options):
        result = pipeline.run(test_runner_api=False)
    else:
        result = pipeline.run()
    result.wait_until_finish()
