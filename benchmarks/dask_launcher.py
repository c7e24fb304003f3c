"""python -m benchmarks.dask_launcher [--inputs 3000 12000]: the launcher's seconds before Dask.

Before a Dask cluster gets its first task, ``expnet generate`` lists the inputs, builds the
pipeline, and Beam's Dask runner translates it into a graph; the workers wait meanwhile. For
each input count, in this one process, on a folder of that many empty ``.jpg`` files (nothing
is read: the graph is built, not run), this prints the seconds of:

- ``build``: listing the inputs and building the generate pipeline;
- ``round trip``: what Beam's ``Pipeline.run`` would do next for a runner outside the Fn API,
  the pipeline to its runner-API proto and back, which ``pipelines.launch.run_to_end`` skips
  on Dask;
- ``tokenize``: Dask naming ``Create``'s graph, a hash of every input item: with
  ``SourceItem.__dask_tokenize__``, and, the baseline, with the method taken away for the
  measurement: Dask's own walk through the dataclass, as before the method existed.

Ratios are against ``build``, which every engine pays, and against the baseline tokenizer.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import apache_beam as beam
from dask.tokenize import tokenize

from pipelines import generate
from pipelines.output_state import plan_run
from pipelines.sources import SourceItem

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"

WALKED = "tokenize, Dask's dataclass walk"


def _seconds(work) -> tuple[float, object]:
    started = time.perf_counter()
    value = work()
    return time.perf_counter() - started, value


def _built(folder: Path, output: Path) -> tuple[beam.Pipeline, list]:
    """The generate pipeline on ``folder`` for Beam's Dask runner, built but not run."""
    options = generate.GenerateOptions(["--input", str(folder), "--output", str(output),
                                        "--quiet", "--overwrite", "--runner", DASK_RUNNER])
    items = generate.list_items(options)
    _, metadata = generate.dataset_metadata(options)
    fingerprint = generate.run_fingerprint(options, metadata)
    plan = plan_run(str(output), model_hash=metadata.model_hash, overwrite=True,
                    incremental=False)
    pipeline = beam.Pipeline(options=options)
    generate.build(pipeline, options, metadata, plan,
                   generate.describe_run(options, metadata, fingerprint), items)
    return pipeline, items


def _without_own_token(work):
    """``work()`` with ``SourceItem.__dask_tokenize__`` taken away: Dask's own walk."""
    own = SourceItem.__dask_tokenize__
    del SourceItem.__dask_tokenize__
    try:
        return work()
    finally:
        SourceItem.__dask_tokenize__ = own


def measure(count: int, work: Path) -> dict:
    """Seconds of each launcher part for ``count`` inputs."""
    folder = work / f"inputs-{count}"
    folder.mkdir()
    for index in range(count):
        (folder / f"face{index:07d}.jpg").touch()
    generate.dataset_metadata(generate.GenerateOptions(
        ["--input", str(folder), "--output", str(work / "warm")]))  # imports and model, once
    build, (pipeline, items) = _seconds(lambda: _built(folder, work / f"out-{count}"))
    round_trip, _ = _seconds(lambda: beam.Pipeline.from_runner_api(
        pipeline.to_runner_api(use_fake_coders=True), pipeline.runner, pipeline.options))
    own, _ = _seconds(lambda: tokenize(items))
    walked, _ = _seconds(lambda: _without_own_token(lambda: tokenize(items)))
    return {"build": build, "round trip": round_trip, "tokenize": own, WALKED: walked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, nargs="+", default=[3000, 12000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="expnet-dask-launcher-") as temp:
        for count in args.inputs:
            parts = measure(count, Path(temp))
            print(f"\n{count} inputs")
            print(f"{'part':34s} {'seconds':>8s} {'vs build':>9s}")
            for name, seconds in parts.items():
                print(f"{name:34s} {seconds:8.2f} {seconds / parts['build']:8.2f}x")
            print(f"tokenize: Dask's walk takes {parts[WALKED] / parts['tokenize']:.1f}x "
                  "SourceItem's own")


if __name__ == "__main__":
    main()
