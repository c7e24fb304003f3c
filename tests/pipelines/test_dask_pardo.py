"""Beam's Dask ParDo translation with a receiver per partition: no outputs kept in the graph."""

from __future__ import annotations

import apache_beam as beam
import pytest

from pipelines.dask_pardo import run_bundle, translate_pardo

dask = pytest.importorskip("dask", reason="the dask extra is not installed")


class _SplitOdd(beam.DoFn):
    """Even numbers as main outputs, odd ones tagged ``odd``, and one count per bundle
    emitted from ``finish_bundle``."""

    def start_bundle(self):
        self.seen = 0

    def process(self, number):
        self.seen += 1
        if number % 2:
            yield beam.pvalue.TaggedOutput("odd", number)
        else:
            yield number

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        yield WindowedValue(("bundle", self.seen), 0, (GlobalWindow(),))


@pytest.fixture
def fresh_pardo():
    """The ParDo translation of this module for the test, the table restored after."""
    from apache_beam.runners.dask import transform_evaluator

    table = transform_evaluator.TRANSLATIONS
    original = dict(table)
    translate_pardo()
    translate_pardo()  # idempotent
    yield
    table.clear()
    table.update(original)


def _pardo_bag(partition_size: int):
    """The Dask bag of ``_SplitOdd`` over 0..39 in partitions of ``partition_size``."""
    from apache_beam.runners.dask.dask_runner import DaskRunner
    from apache_beam.runners.dask.overrides import dask_overrides

    pipeline = beam.Pipeline()
    (pipeline
     | "Numbers" >> beam.Create(range(40))
     | "SplitOdd" >> beam.ParDo(_SplitOdd()).with_outputs("odd", main="even"))
    pipeline.replace_all(dask_overrides())
    visitor = DaskRunner.to_dask_bag_visitor({"partition_size": partition_size})
    pipeline.visit(visitor)
    return {node.full_label: bag for node, bag in visitor.bags.items()}["SplitOdd/ParDo(_SplitOdd)"]


def _sorted_outputs(outputs: list) -> tuple:
    """``(main values, values of tagged outputs)``, each sorted: Beam's translation returns
    tagged outputs as ``WindowedValue``s, main ones as plain values."""
    from apache_beam.utils.windowed_value import WindowedValue

    tagged = [output.value for output in outputs if isinstance(output, WindowedValue)]
    main = [output for output in outputs if not isinstance(output, WindowedValue)]
    return sorted(main, key=repr), sorted(tagged)


def test_every_partition_gives_its_own_outputs_once_in_one_process(fresh_pardo):
    bag = _pardo_bag(10)
    assert bag.npartitions == 4
    # The synchronous scheduler runs every partition in this process, from one graph.
    first = _sorted_outputs(bag.compute(scheduler="synchronous"))
    again = _sorted_outputs(bag.compute(scheduler="synchronous"))
    main, tagged = first
    assert main == sorted([*range(0, 40, 2), *[("bundle", 10)] * 4], key=repr)
    assert tagged == list(range(1, 40, 2))
    assert again == first


def _windowed_values_reachable(root) -> int:
    """How many ``WindowedValue`` objects ``root`` references, directly or not."""
    import gc
    import types

    from apache_beam.utils.windowed_value import WindowedValue

    seen, found, stack = set(), 0, [root]
    while stack:
        current = stack.pop()
        if id(current) in seen or isinstance(current, (type, types.ModuleType)):
            continue
        seen.add(id(current))
        found += isinstance(current, WindowedValue)
        stack.extend(gc.get_referents(current))
    return found


def test_the_graph_holds_no_outputs_after_a_run(fresh_pardo):
    bag = _pardo_bag(10)
    graph = dict(bag.__dask_graph__())
    assert len(bag.compute(scheduler="synchronous")) == 44
    assert _windowed_values_reachable(graph) == 0


def test_a_bundle_run_twice_with_the_same_arguments_gives_the_same_outputs():
    from apache_beam.runners.common import DoFnSignature
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.windowed_value import WindowedValue

    items = [WindowedValue(number, 0, (GlobalWindow(),)) for number in range(6)]
    arguments = (DoFnSignature(_SplitOdd()), None, "SplitOdd", None, [], {})
    first = run_bundle(items, *arguments)
    assert _sorted_outputs(run_bundle(items, *arguments)) == _sorted_outputs(first)
    main, tagged = _sorted_outputs(first)
    assert main == sorted([0, 2, 4, ("bundle", 6)], key=repr)
    assert tagged == [1, 3, 5]


def test_a_pardos_tasks_are_named_by_its_step(fresh_pardo):
    from dask.utils import key_split

    from pipelines.dask_pardo import task_name

    bag = _pardo_bag(10)
    assert task_name("Label/Detect/LandmarkAndCrop") == "LabelDetectLandmarkAndCrop"
    assert task_name("2/3") == "ParDo"
    # Dask's scheduler estimates durations by this prefix; Beam's names were all alike.
    assert key_split(bag.name) == "SplitOddParDoSplitOdd"
    assert [key_split(key) for key in bag.__dask_keys__()] == ["SplitOddParDoSplitOdd"] * 4
