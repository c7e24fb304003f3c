"""Beam's Dask runner with a ParDo translation that keeps no outputs in the task graph.

Beam translates a ``ParDo`` to one ``map_partitions`` call whose arguments include the
receiver that collects the DoFn's outputs (``apply_dofn_to_bundle`` in
``apache_beam/runners/dask/transform_evaluator.py``). The receiver's list lives in the task:
every output of every partition stays referenced from the task's spec for as long as the
worker keeps the task, a second copy beside the partition's result. Measured on two workers
at 12 000 faces, 70 000 to 170 000 ``WindowedValue``s a worker were held that way, and the
workers' RSS grew with the collection (RESULTS.md, "Worker memory against data size").
In one process the partitions of a ParDo also share that one list, so a task run twice (or
the synchronous scheduler) returns earlier partitions' outputs again.

Here each call builds its own receiver and output handler, and returns the outputs after
``finish_bundle`` (Beam's translation gathers them before it and so drops what a DoFn emits
there). The elements, their order and the output format are Beam's.

Each ParDo's tasks are also named by its step (:func:`task_name`): under Beam's name every
ParDo's tasks shared one name prefix, so Dask's scheduler estimated a 3 s detection task by
the average of hundreds of millisecond ones, and in 2 of 8 runs of 3000 faces one worker ran
5 of the 8 detection tasks and the other 3 (the run 3 s longer); named, 4 each in 10 runs of
10 (RESULTS.md, "Create's partitions"). Dask's dashboard and task stream show the steps by
name.
"""

from __future__ import annotations

import functools


def translate_pardo() -> None:
    """Make Beam's Dask runner translate ParDo with a receiver per partition.

    Changes the translation table of ``apache_beam.runners.dask`` in this process (idempotent):
    only the launching process builds the Dask graph, so workers need nothing.
    """
    import apache_beam
    from apache_beam.runners.dask import transform_evaluator

    transform_evaluator.TRANSLATIONS[apache_beam.ParDo] = _fresh_receiver_pardo()


def run_bundle(items, signature, window_fn, label: str, side_inputs, args: list,
               kwargs: dict) -> list:
    """One Dask partition through a DoFn: setup, start, every element, finish, teardown.

    Parameters
    ----------
    items : iterable of WindowedValue   the partition's elements
    signature : DoFnSignature           the DoFn's, made once in the launcher
    window_fn : WindowFn or None        the main input's windowing
    label : str                         the step's label
    side_inputs : list of SideInputMap or None
    args, kwargs                        the ParDo's extra arguments

    Returns
    -------
    list
        The outputs as Beam's translation returns them: main outputs as plain values, tagged
        ones as ``WindowedValue``s.
    """
    from apache_beam import DoFn
    from apache_beam.runners.common import DoFnContext, DoFnInvoker, _OutputHandler
    from apache_beam.runners.dask.transform_evaluator import OneReceiver

    from pipelines.dask_sizeof import register_sizes

    register_sizes()  # before the worker weighs this task's outputs
    receivers = OneReceiver()
    handler = _OutputHandler(window_fn=window_fn, main_receivers=receivers[None],
                             tagged_receivers=receivers, per_element_output_counter=None,
                             output_batch_converter=None, process_yields_batches=False,
                             process_batch_yields_elements=False)
    invoker = DoFnInvoker.create_invoker(
        signature, handler, context=DoFnContext(label, state=None),
        side_inputs=side_inputs, input_args=args, input_kwargs=kwargs, user_state_context=None,
        bundle_finalizer_param=DoFn.BundleFinalizerParam())
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(item)
    invoker.invoke_finish_bundle()
    invoker.invoke_teardown()
    return [output.value for output in receivers.values]


def task_name(label: str) -> str:
    """The Dask task name of a ParDo step labelled ``label``: its letters (``Fit/FitMorphableModel``
    -> ``FitFitMorphableModel``), or ``ParDo`` when it has none.

    Dask's scheduler estimates a task's duration from earlier tasks of the same name prefix
    (``dask.utils.key_split``, which keeps a word after the first only when it is all
    letters), and decides by it where a task runs and whether an idle worker takes one over.
    """
    return "".join(character for character in label if character.isalpha()) or "ParDo"


@functools.cache
def _fresh_receiver_pardo() -> type:
    """The ParDo translation, made on first use: importing this module needs no Dask."""
    from apache_beam.runners.common import DoFnSignature
    from apache_beam.runners.dask.transform_evaluator import ParDo, get_windowed_value

    class FreshReceiverParDo(ParDo):
        """Beam's ParDo translation, each partition with its own receiver."""

        def apply(self, input_bag, side_inputs=None):
            transform = self.transform
            args, kwargs = transform.raw_side_inputs
            main_input = next(iter(self.applied.main_inputs.values()))
            window_fn = getattr(getattr(main_input, "windowing", None), "windowfn", None)
            return input_bag.map(get_windowed_value, window_fn).map_partitions(
                run_bundle, DoFnSignature(transform.fn), window_fn, transform.label, side_inputs,
                list(args), kwargs, token=task_name(self.applied.full_label))

    return FreshReceiverParDo
