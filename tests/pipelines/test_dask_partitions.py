"""Beam's Dask translation with bounded partitions: a Flatten keeps its widest input's count."""

from __future__ import annotations

import apache_beam as beam
import pytest

from pipelines.dask_partitions import bound_partitions, uses_dask
from pipelines.generate import GenerateOptions

dask = pytest.importorskip("dask", reason="the dask extra is not installed")


def _bags(partition_size: int) -> dict:
    """Every step's Dask bag of a small pipeline: three Creates of 40, a Flatten, a GBK."""
    from apache_beam.runners.dask.dask_runner import DaskRunner
    from apache_beam.runners.dask.overrides import dask_overrides

    pipeline = beam.Pipeline()
    parts = [pipeline | f"Create{index}" >> beam.Create(range(index * 40, index * 40 + 40))
             for index in range(3)]
    (parts
     | "Flatten" >> beam.Flatten()
     | "KeyByTens" >> beam.Map(lambda number: (number // 10, number))
     | "Group" >> beam.GroupByKey())
    pipeline.replace_all(dask_overrides())
    visitor = DaskRunner.to_dask_bag_visitor({"partition_size": partition_size})
    pipeline.visit(visitor)
    return {node.full_label: bag for node, bag in visitor.bags.items()}


def test_a_flatten_keeps_the_widest_inputs_partitions_and_every_element():
    from apache_beam.runners.dask import transform_evaluator
    from apache_beam.runners.dask.overrides import _Flatten

    original = transform_evaluator.TRANSLATIONS[_Flatten]
    try:
        # Beam's own translation (an in-process Dask run of this session may have bounded it).
        transform_evaluator.TRANSLATIONS[_Flatten] = transform_evaluator.Flatten
        unbounded = _bags(10)
        bound_partitions()
        bound_partitions()  # idempotent
        bounded = _bags(10)
    finally:
        transform_evaluator.TRANSLATIONS[_Flatten] = original
    assert unbounded["Create0"].npartitions == 4
    assert unbounded["Flatten"].npartitions == 12
    assert bounded["Flatten"].npartitions == 4
    assert bounded["Group/GroupByWindow"].npartitions == 4
    compute = {"scheduler": "synchronous"}
    assert (sorted(bounded["Flatten"].compute(**compute))
            == sorted(unbounded["Flatten"].compute(**compute)) == list(range(120)))


def test_uses_dask_names_the_runner_by_its_short_or_full_name():
    assert uses_dask(GenerateOptions(["--runner", "DaskRunner"]))
    assert uses_dask(GenerateOptions(
        ["--runner", "apache_beam.runners.dask.dask_runner.DaskRunner"]))
    assert not uses_dask(GenerateOptions([]))
    assert not uses_dask(GenerateOptions(["--runner", "DirectRunner"]))
