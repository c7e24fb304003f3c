"""python -m benchmarks.worker_memory [--sizes N ...] [--engines ...] [--memory-limits ...]: RSS.

Peak RSS of each worker process of ``expnet generate --workers 2`` and of a 2x1 Dask
``distributed.LocalCluster``, and of the launching process, at several collection sizes.
Makes the largest collection once (unique 250 x 250 faces, as in generate_speed.py); the
smaller ones are its first files, hard-linked. RSS is sampled every 0.2 s
(``benchmarks.scaling.PeakRss``). Prints, per size and engine, seconds, the largest worker's
and the launcher's peak, and each against the previous size: a worker whose buffers are
bounded stops growing once the data fills them, whatever the collection's size.
``--memory-limits`` runs Dask once per limit given to each worker (``auto``, Dask's default,
shares the machine's memory; ``800MiB``: the worker spills what Dask manages from 60 % of it,
pauses at 80 %), to see what a limit bounds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from benchmarks.generate_speed import make_collection
from benchmarks.scaling import PeakRss, dask_local_run, linked, timed_run


def _engine_runs(faces: Path, output: Path, engines: list[str],
                 limits: list[str]) -> list[tuple]:
    """``(engine, seconds, worker MiB, launcher MiB)`` for ``--workers 2`` and Dask 2x1, the
    latter once per memory limit in ``limits``."""
    rows = []
    if "workers" in engines:
        with PeakRss() as memory:
            seconds = timed_run(faces, output / "w2", "--workers", "2")
        rows.append(("--workers 2", seconds, memory.peak_mib(workers=True),
                     memory.peak_mib(workers=False)))
    for limit in limits if "dask" in engines else []:
        seconds, memory = dask_local_run(faces, output / f"dask-{limit}", memory_limit=limit)
        rows.append((f"Dask 2x1, limit {limit}", seconds, memory.peak_mib(workers=True),
                     memory.peak_mib(workers=False)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 12000, 24000])
    parser.add_argument("--engines", nargs="+", choices=["workers", "dask"],
                        default=["workers", "dask"])
    parser.add_argument("--memory-limits", nargs="+", default=["auto"],
                        help="each Dask worker's memory limit, one Dask run per value")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes))
    results = {}
    with tempfile.TemporaryDirectory(prefix="expnet-worker-memory-") as temp:
        work = Path(temp)
        everything = work / "faces"
        make_collection(everything, sizes[-1], 250)
        for count in sizes:
            faces = everything if count == sizes[-1] else linked(
                sorted(everything.iterdir())[:count], work / f"faces-{count}")
            results[count] = _engine_runs(faces, work / f"out-{count}", args.engines,
                                          args.memory_limits)
            print(f"{count} faces done (load average {os.getloadavg()[0]:.2f})", flush=True)
    print(f"\n{'faces':>6s} {'engine':28s} {'seconds':>8s} {'worker MiB':>11s} "
          f"{'vs before':>10s} {'launcher MiB':>13s} {'vs before':>10s}")
    for index, count in enumerate(sizes):
        for engine, (name, seconds, worker, launcher) in enumerate(results[count]):
            if index:
                _, _, worker_before, launcher_before = results[sizes[index - 1]][engine]
                growth = (f"{worker / worker_before:9.2f}x", f"{launcher / launcher_before:9.2f}x")
            else:
                growth = ("-", "-")
            print(f"{count:6d} {name:28s} {seconds:8.1f} {worker:11.0f} {growth[0]:>10s} "
                  f"{launcher:13.0f} {growth[1]:>10s}")


if __name__ == "__main__":
    main()
