"""Running a built pipeline: on Dask without Beam's runner-API round trip, unless it has
side inputs, which need it."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.launch import has_side_inputs, run_to_end

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


def _write(values, path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(sorted(values), handle)


def _pipeline(address: str, path: str, *, side_input: bool) -> beam.Pipeline:
    """Create(0..9) -> the sorted list written to ``path``; gathered by ``ToList`` (a side
    input, for its default) or by a GroupByKey on one key."""
    pipeline = beam.Pipeline(options=PipelineOptions(
        ["--runner", DASK_RUNNER, "--dask_client_address", address]))
    numbers = pipeline | "Numbers" >> beam.Create(range(10))
    if side_input:
        gathered = numbers | "All" >> beam.combiners.ToList()
    else:
        gathered = (numbers
                    | "KeyAlike" >> beam.Map(lambda number: (0, number))
                    | "Group" >> beam.GroupByKey()
                    | "Values" >> beam.MapTuple(lambda _, values: list(values)))
    gathered | "Write" >> beam.Map(_write, path)
    return pipeline


@pytest.fixture(scope="module")
def dask_address():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.mark.parametrize("side_input", [False, True])
def test_a_dask_run_skips_the_round_trip_unless_it_has_side_inputs(dask_address, tmp_path,
                                                                  monkeypatch, side_input):
    proto_calls = []
    to_runner_api = beam.Pipeline.to_runner_api

    def counted(self, *args, **kwargs):
        proto_calls.append(1)
        return to_runner_api(self, *args, **kwargs)

    monkeypatch.setattr(beam.Pipeline, "to_runner_api", counted)
    path = tmp_path / "numbers.json"
    pipeline = _pipeline(dask_address, str(path), side_input=side_input)
    assert has_side_inputs(pipeline) == side_input
    run_to_end(pipeline)
    distributed.default_client().close()  # Beam's Dask runner leaves its client connected
    assert json.loads(path.read_text()) == list(range(10))
    assert bool(proto_calls) == side_input
