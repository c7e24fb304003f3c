"""python -m benchmarks.dask_timeline [--faces 12000] [FLAGS ...]: where a Dask run waits.

Runs ``expnet generate`` on Beam's DaskRunner on a 2x1 ``distributed.LocalCluster`` over
unique 250 x 250 faces (made once, as in generate_speed.py; extra arguments go to the
command, e.g. ``--num-shards 2``) and asks every worker, every 0.5 s through
``client.run``, whether it is executing a task, its RSS and what Dask counts as its managed
memory. Prints when the first task after the warm-up started, the seconds in which both,
one or no worker was busy, the tail (from the last sample with both workers busy to the end:
the final shard writes and gathers when they run on one worker), and each worker's peak RSS
and peak managed memory. The figures are of one run: compare runs made one after the other.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.generate_speed import make_collection
from benchmarks.scaling import dask_run, local_cluster

INTERVAL_S = 0.5
WARM_UP_PREFIX = "expnet-warm-up"


def worker_state(dask_worker=None) -> dict:
    """One worker's sample: whether it runs a task of the pipeline, its RSS and managed
    memory (bytes)."""
    import psutil

    running = [ts.key for ts in dask_worker.state.executing
               if not str(ts.key).startswith(WARM_UP_PREFIX)]
    return {"busy": bool(running), "rss": psutil.Process().memory_info().rss,
            "managed": dask_worker.state.nbytes}


def sample_workers(client, samples: list, stopping: threading.Event) -> None:
    """Append ``(seconds since start, {worker: worker_state})`` until ``stopping`` is set."""
    started = time.perf_counter()
    while not stopping.wait(INTERVAL_S):
        try:
            state = client.run(worker_state)
        except OSError:  # a worker going away at the end of the run
            continue
        samples.append((time.perf_counter() - started, state))


def summarise(samples: list, seconds: float) -> dict:
    """The timeline's figures from the samples of a run that took ``seconds``."""
    busy = [sum(state["busy"] for state in states.values()) for _, states in samples]
    first = next((at for (at, _), count in zip(samples, busy) if count), None)
    by_count = {count: INTERVAL_S * busy.count(count) for count in (0, 1, 2)}
    # The tail runs from the last sample that saw both workers busy to the run's end.
    both = [at for (at, _), count in zip(samples, busy) if count > 1]
    tail_start = both[-1] if both else 0.0
    workers = sorted({worker for _, states in samples for worker in states})
    peaks = {worker: (max(states[worker]["rss"] for _, states in samples if worker in states),
                      max(states[worker]["managed"] for _, states in samples
                          if worker in states))
             for worker in workers}
    return {"first_task_s": first, "busy_s": by_count, "tail_s": seconds - tail_start,
            "peaks": peaks}


def main() -> None:
    import distributed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=12000)
    args, flags = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="expnet-dask-timeline-") as temp:
        work = Path(temp)
        make_collection(work / "faces", args.faces, 250)
        with local_cluster() as address:
            with distributed.Client(address, set_as_default=False) as client:
                samples, stopping = [], threading.Event()
                sampler = threading.Thread(target=sample_workers,
                                           args=(client, samples, stopping), daemon=True)
                sampler.start()
                try:
                    seconds = dask_run(work / "faces", work / "out", address, *flags)
                finally:
                    stopping.set()
                    sampler.join()
    figures = summarise(samples, seconds)
    print(f"\n{args.faces} faces, Dask 2x1 {' '.join(flags)}: {seconds:.1f} s")
    print(f"first task after the warm-up at {figures['first_task_s']:.1f} s")
    print("seconds with 2 / 1 / 0 workers busy: "
          + " / ".join(f"{figures['busy_s'][count]:.1f}" for count in (2, 1, 0)))
    print(f"tail with at most one worker busy: {figures['tail_s']:.1f} s")
    for worker, (rss, managed) in figures["peaks"].items():
        print(f"{worker}: peak RSS {rss / 2**20:.0f} MiB, peak managed {managed / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
