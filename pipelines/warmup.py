"""Loading a run's heavy resources on a Dask cluster's workers while the launcher builds.

Before its first face, a worker imports Beam and the detector's libraries and loads the
detector and the model: about 3.5 s (RESULTS.md, "Dask partitions"), paid by every worker
when its first partition arrives. The launcher meanwhile spends a few seconds of its own
listing inputs and building and translating the graph, when the workers have nothing to do.
:func:`warm_dask_workers` gives each worker one task that loads the resources
(:func:`pipelines.resources.load_once`, so the pipeline's steps find them loaded) as soon as
the run starts, so the two waits overlap.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)


def load_resources(landmarker: str, landmarker_options: dict, model_spec: str,
                   describe: bool) -> None:
    """Load, in this process, what the labelling steps of a run load at their first element."""
    from pipelines.faces import load_descriptor
    from pipelines.inference import load_landmarker
    from pipelines.labelling import load_worker_model

    load_landmarker(landmarker, landmarker_options)
    load_worker_model(model_spec)
    if describe:
        load_descriptor()


def warm_dask_workers(address: str, *resources, timeout_s: float = 10) -> Callable[[], None]:
    """Start :func:`load_resources` on every worker of the cluster at ``address``.

    Does not wait for the loads. Returns the function that releases them once the run is
    over: call it after the pipeline has finished (a load still running is then cancelled).
    A cluster that cannot be reached is left to the runner, which reports it.

    Parameters
    ----------
    address : str
        The scheduler's address (``--dask_client_address``).
    *resources
        The arguments of :func:`load_resources`.
    timeout_s : float
        How long to try to reach the scheduler.
    """
    import distributed

    try:
        client = distributed.Client(address, set_as_default=False, timeout=timeout_s)
    except (OSError, TimeoutError) as error:
        _LOGGER.warning("could not warm the Dask workers at %s: %s", address, error)
        return lambda: None
    run = uuid.uuid4().hex[:12]
    loads = [client.submit(load_resources, *resources, workers=[worker], pure=False,
                           allow_other_workers=False, key=f"expnet-warm-up-{run}-{index}")
             for index, worker in enumerate(client.scheduler_info()["workers"])]

    def release() -> None:
        client.cancel(loads)
        client.close()

    return release
