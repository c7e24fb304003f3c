"""Beam's Dask runner with bounded partition counts, for Flatten and for GroupByKey.

Beam translates ``Flatten`` to ``dask.bag.concat``, whose partitions are the sum of its
inputs', and every later step runs once per partition. Every Flatten in ``expnet generate``
(failures of four stages, seven streams of accounting events, the outputs gathered for the
manifest) multiplied the count: for 200 faces in 13 partitions of 16 the last step had 278
partitions and the graph 11 620 tasks (RESULTS.md, "Dask partitions"). Here a Flatten merges
adjacent partitions back to its widest input's count: no shuffle, the same elements.

Beam translates ``GroupByKey`` to ``Bag.groupby``, a task shuffle whose output keeps the
input's partition count and which costs about n x n small tasks for n partitions. The input
partitions are sized for the heavy first steps (``Create``'s 128 items each), so at 3000 faces
the run's eight shuffles made 4780 split tasks, and the scheduler's handling of them, not the
work, set the last third of the run's wall time (RESULTS.md, "Dask shuffles, pixels and warm
workers"). Here a GroupByKey first merges adjacent input partitions down to twice the
cluster's worker threads (at least 8), enough to keep every thread busy after the shuffle.
Grouping does not depend on the partitioning, so the dataset is the same.

Beam's ``Create`` cuts its items into partitions of 128 (``--dask_partition_size``), so the
steps before the first shuffle ran as 94 tasks each at 12 000 inputs on two worker threads.
Where the flags give neither ``--dask_partition_size`` nor ``--dask_npartitions``, a Create
here makes four partitions a worker thread of the connected cluster, of 128 to 1024 items
(:func:`create_partition_size`): at 12 000 faces on two workers the launcher, which holds
a LocalCluster's scheduler, spent 3.7 to 4.1 s of CPU against 5.4 to 5.7 s, and the run 1 to
6 % less time (RESULTS.md, "Create's partitions").

The GroupByKey of a :class:`pipelines.collect.ToOneList` (the shard count, the final gathers
for the manifest and ``stats.json``), whose elements all share one key, runs in one partition
without a shuffle: a task shuffle over eight partitions cost some 80 tasks for each of them.

Which partition a key goes to is :func:`partition_hash` of it, the same in every process.
Dask's own hash, ``tokenize``, scatters the pipeline's small int keys at random: the 64 fit
buckets fell 4 to 12 to a partition over 8 partitions, so one task had three times the
fitting of another, and over 64 partitions 22 got none and others 4 (RESULTS.md, "The
launcher, and where a Dask run waits").
"""

from __future__ import annotations

import functools
import math

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

DASK_RUNNER_NAMES = ("DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner")
# Partitions a shuffle keeps per worker thread: two, so that a slow partition has company;
# and at least 8 (64 split tasks a shuffle), so that a small cluster still spreads its work.
SHUFFLE_PARTITIONS_PER_THREAD = 2
MIN_SHUFFLE_PARTITIONS = 8
# partition_hash of a tuple of ints: a polynomial in this prime (prime to any partition count
# below it), kept below 2**64.
HASH_MULTIPLIER = 1_000_003
HASH_MODULUS = 2**64
# Create's partitions when the flags do not size them: four a worker thread, so that a slow
# partition has company and the last ones are short, of at least Beam's default 128 items
# and at most 1024 (bounded so that a task is small enough to rerun on a large cluster).
CREATE_PARTITIONS_PER_THREAD = 4
MIN_CREATE_PARTITION_SIZE = 128
MAX_CREATE_PARTITION_SIZE = 1024

_settings = {"shuffle_partitions": None}


def uses_dask(options: PipelineOptions) -> bool:
    """Whether ``options`` run on Beam's Dask runner."""
    runner = options.view_as(StandardOptions).runner
    return isinstance(runner, str) and runner in DASK_RUNNER_NAMES


def translate_for_dask() -> None:
    """Install every Dask translation of this project in this process: Flatten and
    GroupByKey with bounded partitions, Create with partitions sized to the cluster, and
    ParDo with a receiver per partition (:mod:`pipelines.dask_pardo`)."""
    from pipelines.dask_pardo import translate_pardo

    bound_partitions()
    translate_pardo()


def bound_partitions(shuffle_partitions: int | None = None) -> None:
    """Make Beam's Dask runner translate Flatten and GroupByKey with bounded partition counts,
    and Create with partitions sized to the cluster.

    Changes the translation table of ``apache_beam.runners.dask`` in this process (idempotent):
    only the launching process builds the Dask graph, so workers need nothing.

    Parameters
    ----------
    shuffle_partitions : int, optional
        Partitions a GroupByKey's input is merged down to. ``None`` (the default): twice the
        worker threads of the Dask cluster the runner connects to (at least
        ``MIN_SHUFFLE_PARTITIONS``), read when the graph is built; no bound when no cluster
        is connected.
    """
    from apache_beam.runners.dask import transform_evaluator
    from apache_beam.runners.dask.overrides import _Create, _Flatten, _GroupByKeyOnly

    if shuffle_partitions is not None and shuffle_partitions < 1:
        raise ValueError(f"shuffle_partitions must be at least 1, got {shuffle_partitions}")
    _settings["shuffle_partitions"] = shuffle_partitions
    transform_evaluator.TRANSLATIONS[_Flatten] = _bounded_flatten()
    transform_evaluator.TRANSLATIONS[_GroupByKeyOnly] = _bounded_group_by_key()
    transform_evaluator.TRANSLATIONS[_Create] = _sized_create()


def cluster_threads() -> int | None:
    """Worker threads of the Dask cluster this process's default client is connected to
    (Beam's runner connects one before it builds the graph), or ``None`` without one."""
    try:
        from distributed import default_client
        client = default_client()
    except (ImportError, ValueError):  # no distributed, or no client connected
        return None
    return sum(worker["nthreads"] for worker in client.scheduler_info()["workers"].values())


def shuffle_partition_bound() -> int | None:
    """Partitions a GroupByKey's input is merged down to, or ``None`` for no bound."""
    if _settings["shuffle_partitions"] is not None:
        return _settings["shuffle_partitions"]
    threads = cluster_threads()
    if threads is None:
        return None
    return max(MIN_SHUFFLE_PARTITIONS, SHUFFLE_PARTITIONS_PER_THREAD * threads)


def create_partition_size(items: int, threads: int) -> int:
    """Items a partition of ``Create`` holds for ``items`` items on ``threads`` worker threads
    when the flags do not say: ``CREATE_PARTITIONS_PER_THREAD`` partitions a thread, each of
    ``MIN_CREATE_PARTITION_SIZE`` to ``MAX_CREATE_PARTITION_SIZE`` items."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    wanted = math.ceil(items / (CREATE_PARTITIONS_PER_THREAD * threads))
    return min(MAX_CREATE_PARTITION_SIZE, max(MIN_CREATE_PARTITION_SIZE, wanted))


def _merged(bag, partitions: int | None):
    """``bag`` with adjacent partitions merged down to ``partitions`` (no shuffle)."""
    if partitions is None or bag.npartitions <= partitions:
        return bag
    return bag.repartition(npartitions=partitions)


def partition_hash(key) -> int:
    """The int a GroupByKey's task shuffle sends ``key``'s group by (its partition is this
    modulo the partition count, digit by digit in a shuffle of several stages).

    Ints and tuples of ints, the keys of every shuffle of the pipeline but the accounting's
    counts, hash to a polynomial of their values: keys that differ by one in their last int
    (the fit and detection buckets ``(0, b)`` and ``b``, a video's chunks, the shards
    ``(index, count)``) land in consecutive partitions. Random ints (content and subject
    keys) stay uniform. Any other key gets Dask's ``tokenize`` hash.
    """
    if isinstance(key, int):
        return key % HASH_MODULUS
    if isinstance(key, tuple) and all(isinstance(part, int) for part in key):
        value = 0
        for part in key:
            value = (value * HASH_MULTIPLIER + part) % HASH_MODULUS
        return value
    from dask.tokenize import tokenize

    return int(tokenize(key), 16)


def _key(item: tuple):
    """The key of a ``(key, value)`` element."""
    return item[0]


def _gathers_all(applied) -> bool:
    """Whether the GroupByKey ``applied`` is a :class:`pipelines.collect.ToOneList`'s, whose
    elements all have one key."""
    from pipelines.collect import ToOneList

    while applied is not None:
        if isinstance(applied.transform, ToOneList):
            return True
        applied = applied.parent
    return False


def _grouped_in_partition(items) -> list:
    """A partition's ``(key, value)`` items as Dask's groups ``(key, [(key, value), ...])``,
    keys in the order first seen."""
    groups: dict = {}
    for item in items:
        groups.setdefault(_key(item), []).append(item)
    return list(groups.items())


def _key_and_values(group: tuple) -> tuple:
    """A Dask group ``(key, [(key, value), ...])`` as Beam's ``(key, [value, ...])``."""
    from apache_beam.utils.windowed_value import WindowedValue

    from pipelines.dask_sizeof import register_sizes

    register_sizes()  # a worker may run a shuffle's task before any ParDo's
    key, items = group
    return key, [value.value if isinstance(value, WindowedValue) else value
                 for _, value in items]


@functools.cache
def _bounded_flatten() -> type:
    """The Flatten translation, made on first use: importing this module needs no Dask."""
    from apache_beam.runners.dask.transform_evaluator import Flatten

    class BoundedFlatten(Flatten):
        """``concat`` of the inputs, then adjacent partitions merged to the widest input's."""

        def apply(self, input_bag, side_inputs=None):
            widest = max((bag.npartitions for bag in input_bag), default=1)
            return _merged(super().apply(input_bag, side_inputs), widest)

    return BoundedFlatten


@functools.cache
def _sized_create() -> type:
    """The Create translation, made on first use."""
    from apache_beam.runners.dask.transform_evaluator import Create

    class SizedCreate(Create):
        """Beam's Create, its partitions sized by :func:`create_partition_size` when the
        flags give neither a partition size nor a count and a cluster is connected."""

        def apply(self, input_bag, side_inputs=None):
            if self.bag_kwargs.get("npartitions") or self.bag_kwargs.get("partition_size"):
                return super().apply(input_bag, side_inputs)
            threads = cluster_threads()  # a round trip to the scheduler
            if threads is None:
                return super().apply(input_bag, side_inputs)
            import dask.bag

            items = self.transform.values
            return dask.bag.from_sequence(
                items, partition_size=create_partition_size(len(items), threads))

    return SizedCreate


@functools.cache
def _bounded_group_by_key() -> type:
    """The GroupByKey translation, made on first use."""
    from apache_beam.runners.dask.transform_evaluator import GroupByKey

    class BoundedGroupByKey(GroupByKey):
        """Beam's ``groupby`` translation on the input merged to the shuffle bound, keys
        sent to partitions by :func:`partition_hash`; a ``ToOneList``'s grouped in one
        partition, without a shuffle.

        The task shuffle is called by name (``Bag.groupby(shuffle="tasks")`` calls it, with
        Dask's hash), not left to Dask's default: finding the default imports
        ``dask.dataframe`` (about 1 s of the launcher's start-up).
        """

        def apply(self, input_bag, side_inputs=None):
            from dask.bag.core import groupby_tasks

            if _gathers_all(self.applied):
                whole = input_bag.repartition(npartitions=1)
                return whole.map_partitions(_grouped_in_partition).map(_key_and_values)
            merged = _merged(input_bag, shuffle_partition_bound())
            return groupby_tasks(merged, _key, hash=partition_hash).map(_key_and_values)

    return BoundedGroupByKey
