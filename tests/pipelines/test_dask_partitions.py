"""Beam's Dask translation with bounded partitions: a Flatten keeps its widest input's count."""

from __future__ import annotations

import apache_beam as beam
import pytest

from pipelines.dask_partitions import bound_partitions, uses_dask
from pipelines.generate import GenerateOptions

dask = pytest.importorskip("dask", reason="the dask extra is not installed")


def _bags(partition_size: int | None, size: int = 40) -> dict:
    """Every step's Dask bag of a small pipeline: three Creates of ``size``, a Flatten, a GBK.

    ``partition_size`` is the runner's ``--dask_partition_size`` (``None``: not given)."""
    from apache_beam.runners.dask.dask_runner import DaskRunner
    from apache_beam.runners.dask.overrides import dask_overrides

    pipeline = beam.Pipeline()
    parts = [pipeline | f"Create{index}" >> beam.Create(range(index * size, index * size + size))
             for index in range(3)]
    (parts
     | "Flatten" >> beam.Flatten()
     | "KeyByTens" >> beam.Map(lambda number: (number // 10, number))
     | "Group" >> beam.GroupByKey())
    pipeline.replace_all(dask_overrides())
    given = {} if partition_size is None else {"partition_size": partition_size}
    visitor = DaskRunner.to_dask_bag_visitor(given)
    pipeline.visit(visitor)
    return {node.full_label: bag for node, bag in visitor.bags.items()}


@pytest.fixture
def beams_translations():
    """Beam's own Create, Flatten and GroupByKey translations for the test, the table
    restored after (an in-process Dask run of this session may have bounded them)."""
    from apache_beam.runners.dask import transform_evaluator
    from apache_beam.runners.dask.overrides import _Create, _Flatten, _GroupByKeyOnly

    table = transform_evaluator.TRANSLATIONS
    original = dict(table)
    table[_Create] = transform_evaluator.Create
    table[_Flatten] = transform_evaluator.Flatten
    table[_GroupByKeyOnly] = transform_evaluator.GroupByKey
    yield
    table.clear()
    table.update(original)


def _groups(bag) -> list:
    """The ``(key, sorted values)`` of a GroupByKey's bag, sorted by key.

    Computed in a worker process, as on a cluster: Beam's ParDo translation relies on each
    task being unpickled, and in this process the partitions of a ParDo share one output list.
    """
    computed = bag.compute(scheduler="processes", num_workers=1)
    return sorted((key, sorted(values)) for key, values in computed)


def test_a_flatten_keeps_the_widest_inputs_partitions_and_every_element(beams_translations):
    unbounded = _bags(10)
    bound_partitions()
    bound_partitions()  # idempotent
    bounded = _bags(10)
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


def test_a_group_by_key_merges_its_input_to_the_bound_and_groups_the_same(beams_translations):
    unbounded = _bags(5)  # 8 partitions a Create, 24 after the (unbounded) Flatten
    bound_partitions(shuffle_partitions=3)
    bounded = _bags(5)
    group = "Group/GroupByWindow"
    assert unbounded[group].npartitions == 24
    assert bounded[group].npartitions == 3
    assert _groups(bounded[group]) == _groups(unbounded[group])
    assert _groups(bounded[group]) == [(tens, list(range(tens * 10, tens * 10 + 10)))
                                       for tens in range(12)]


def test_the_shuffle_bound_is_twice_the_clusters_threads_with_a_floor(beams_translations):
    from pipelines import dask_partitions

    distributed = pytest.importorskip("distributed")
    bound_partitions()
    assert dask_partitions.shuffle_partition_bound() is None  # no cluster connected
    with distributed.LocalCluster(n_workers=3, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            assert dask_partitions.shuffle_partition_bound() == 12
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            assert dask_partitions.shuffle_partition_bound() == 8
    with pytest.raises(ValueError, match="at least 1"):
        bound_partitions(shuffle_partitions=0)


def test_create_makes_four_partitions_a_thread_unless_the_flags_size_them(beams_translations):
    distributed = pytest.importorskip("distributed")
    bound_partitions()
    compute = {"scheduler": "synchronous"}
    assert _bags(None, size=2000)["Create0"].npartitions == 16  # no cluster: Beam's 128
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            sized = _bags(None, size=2000)
            given = _bags(100, size=2000)
            small = _bags(None, size=40)
    assert sized["Create1"].npartitions == 8  # 250 items each, four a thread
    assert sized["Create1"].compute(**compute) == list(range(2000, 4000))
    assert given["Create1"].npartitions == 20
    assert small["Create0"].npartitions == 1  # at least 128 items a partition


def test_a_to_one_list_gathers_in_one_partition_without_a_shuffle(beams_translations):
    from apache_beam.runners.dask.dask_runner import DaskRunner
    from apache_beam.runners.dask.overrides import dask_overrides

    from pipelines.collect import ToOneList

    def gathered_and_grouped():
        pipeline = beam.Pipeline()
        numbers = pipeline | "Numbers" >> beam.Create(range(100))
        numbers | "All" >> ToOneList()
        (numbers
         | "KeyByTens" >> beam.Map(lambda number: (number // 10, number))
         | "Group" >> beam.GroupByKey())
        pipeline.replace_all(dask_overrides())
        visitor = DaskRunner.to_dask_bag_visitor({"partition_size": 10})
        pipeline.visit(visitor)
        bags = {node.full_label: bag for node, bag in visitor.bags.items()}
        return bags["All/DropSeed"], bags["Group/GroupByWindow"]

    bound_partitions(shuffle_partitions=4)
    gathered, grouped = gathered_and_grouped()
    assert gathered.npartitions == 1
    assert not any("shuffle" in str(key) for key in dict(gathered.__dask_graph__()))
    [values] = gathered.compute(scheduler="processes", num_workers=1)
    assert sorted(values) == list(range(100))
    # Any other GroupByKey still shuffles, to the bound.
    assert grouped.npartitions == 4
    assert any("shuffle" in str(key) for key in dict(grouped.__dask_graph__()))
    assert _groups(grouped) == [(tens, list(range(tens * 10, tens * 10 + 10)))
                                for tens in range(10)]


def test_create_partition_size_is_four_a_thread_within_its_bounds():
    from pipelines.dask_partitions import create_partition_size

    assert create_partition_size(3000, 2) == 375
    assert create_partition_size(12000, 2) == 1024
    assert create_partition_size(1_000_000, 64) == 1024
    assert create_partition_size(100_000, 64) == 391
    assert create_partition_size(500, 8) == 128
    assert create_partition_size(0, 2) == 128
    with pytest.raises(ValueError, match="at least 1"):
        create_partition_size(100, 0)


def _partition_keys(bag) -> list:
    """The sorted keys in each partition of a GroupByKey's bag."""
    return [sorted(key for key, _ in part.compute(scheduler="synchronous"))
            for part in bag.to_delayed()]


@pytest.mark.parametrize("partitions", [8, 16, 64])
def test_consecutive_int_keys_spread_evenly_over_the_shuffles_partitions(beams_translations,
                                                                        partitions):
    # The fit buckets are keys (0, b), b < 64, and shards (index, count): every partition
    # gets its share of buckets, and shards land in partitions of their own. (A shuffle
    # keeps its input's partition count, up to the bound.)
    pipeline = beam.Pipeline()
    buckets = (pipeline
               | "Buckets" >> beam.Create(range(partitions * 16))
               | "KeyByBucket" >> beam.Map(lambda number: ((0, number % 64), number))
               | "GroupBuckets" >> beam.GroupByKey())
    shards = (pipeline
              | "Shards" >> beam.Create(range(partitions * 16))  # 16 a partition
              | "KeyByShard" >> beam.Map(lambda number: ((number % partitions, partitions),
                                                         number))
              | "GroupShards" >> beam.GroupByKey())
    del buckets, shards
    from apache_beam.runners.dask.dask_runner import DaskRunner
    from apache_beam.runners.dask.overrides import dask_overrides

    from pipelines.dask_pardo import translate_pardo

    bound_partitions(shuffle_partitions=partitions)
    translate_pardo()
    pipeline.replace_all(dask_overrides())
    visitor = DaskRunner.to_dask_bag_visitor({"partition_size": 16})
    pipeline.visit(visitor)
    bags = {node.full_label: bag for node, bag in visitor.bags.items()}
    bucket_parts = _partition_keys(bags["GroupBuckets/GroupByWindow"])
    assert [len(keys) for keys in bucket_parts] == [64 // partitions] * partitions
    assert sorted(key for keys in bucket_parts for key in keys) == [(0, b) for b in range(64)]
    shard_parts = _partition_keys(bags["GroupShards/GroupByWindow"])
    assert [len(keys) for keys in shard_parts] == [1] * partitions


def test_partition_hash_is_dasks_for_other_keys_and_uniform_for_random_ints():
    from dask.tokenize import tokenize

    from pipelines.dask_partitions import partition_hash
    from pipelines.reading import content_key

    key = ("source", "/data/faces", "input")
    assert partition_hash(key) == int(tokenize(key), 16)
    assert partition_hash(-3) == partition_hash(2**64 - 3)
    # Content keys (ints from sha256 digests) still fill 8 partitions near evenly.
    import hashlib

    counts = [0] * 8
    for index in range(8000):
        digest = hashlib.sha256(str(index).encode()).hexdigest()
        counts[partition_hash(content_key(digest)) % 8] += 1
    assert min(counts) > 900 and max(counts) < 1100


def test_the_rows_reach_their_shards_from_every_partition_of_the_plan(beams_translations,
                                                                      tmp_path):
    # Only the rows' sizes meet in one place; the rows get their shard in the plan's buckets,
    # so each shard's writer gets them from the partitions (the workers) that fitted them,
    # not all from one task.
    from apache_beam.runners.dask.dask_runner import DaskRunner
    from apache_beam.runners.dask.overrides import dask_overrides

    from pipelines.dask_pardo import translate_pardo
    from pipelines.writing import PendingRow, WriteShards
    from schemas.layout import shard_of

    ids = [f"{index:064x}" for index in range(400)]
    pipeline = beam.Pipeline()
    (pipeline
     | "Rows" >> beam.Create([PendingRow(row_id, 1000) for row_id in ids])
     | "WriteShards" >> WriteShards(str(tmp_path), metadata=None, num_shards=3))
    bound_partitions(shuffle_partitions=8)
    translate_pardo()
    pipeline.replace_all(dask_overrides())
    visitor = DaskRunner.to_dask_bag_visitor({"partition_size": 16})
    pipeline.visit(visitor)
    bags = {node.full_label: bag for node, bag in visitor.bags.items()}
    parts = [part.compute(scheduler="synchronous")
             for part in bags["WriteShards/AssignShards"].to_delayed()]
    assert len(parts) == 8
    # 8 of the 64 buckets a partition: about 50 rows each, none left empty.
    assert all(30 < len(part) < 75 for part in parts)
    assigned = [item for part in parts for item in part]
    assert sorted(pending.id for _, pending in assigned) == ids
    assert all(key == (shard_of(pending.id, 3), 3) for key, pending in assigned)
