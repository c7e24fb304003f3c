"""python -m benchmarks.scaling [--faces 3000] [--large 0] [--size 250]: images/s by runner.

Images/s of ``expnet generate`` on one process, on N processes and on a Dask LocalCluster.
Makes unique SIZE x SIZE faces once in a temporary folder (the bundled photos cut around their
face, each corner-marked so that nothing deduplicates, as in generate_speed.py), then runs, in
this one invocation and on the same folder: ``--workers 1`` (in memory, the baseline),
``--workers 2`` and Beam's DaskRunner on a 2-worker ``distributed.LocalCluster`` (2 processes
x 1 thread). Right after the ``--workers 1`` run it measures the machine's ceiling for two
processes: two independent ``--workers 1`` runs, each on half of the faces, in two processes
started at once (imports done before the clock starts), with nothing shared between them: no
shuffle, no coordinator. No two-process engine can beat that. Prints seconds, images/s,
speed-up over ``--workers 1`` and the peak RSS of the heaviest process of each run (sampled:
the launcher for ``--workers 1``, else its workers).
``--large`` (optional, 0 = skip) repeats the table at that many faces. Every run must write
the same shards (checked). Compare ratios from one run only: on a shared machine the absolute
figures move with the load, which is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import multiprocessing
import os
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.generate_speed import make_collection
from pipelines import generate
from schemas.layout import MANIFEST_NAME
from schemas.reader import DatasetReader

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


def _digest(output: Path) -> dict:
    dataset = DatasetReader(str(output))
    paths = [*dataset.shard_paths(), dataset.path(MANIFEST_NAME)]
    return {Path(path).name: hashlib.sha256(Path(path).read_bytes()).hexdigest()
            for path in paths}


def timed_run(faces: Path, output: Path, *flags: str) -> float:
    """Seconds of ``expnet generate`` on ``faces`` with ``flags``; raises unless every face
    was written and the accounting holds."""
    started = time.perf_counter()
    stats = generate.run(["--input", str(faces), "--output", str(output), "--quiet",
                          "--overwrite", *flags])
    seconds = time.perf_counter() - started
    if not stats["invariant"]["holds"] or stats["written"] != stats["inputs"]:
        raise RuntimeError(f"run {flags} did not write every face: {stats['invariant']}")
    return seconds


def linked(paths: list[Path], folder: Path) -> Path:
    """``folder``, made, holding a hard link to each of ``paths``."""
    folder.mkdir(parents=True)
    for path in paths:
        os.link(path, folder / path.name)
    return folder


def _halves(faces: Path, work: Path) -> list[Path]:
    """The collection's files in two folders of hard links, every other file in each."""
    files = sorted(faces.iterdir())
    return [linked(files[index::2], work / f"half-{index}") for index in range(2)]


def _half_run(half: Path, output: Path, ready, go) -> None:
    """A spawned process's ``--workers 1`` run on ``half``, once ``go`` is set.

    Its imports (this module's, of the pipeline) happen before it sets ``ready``, so the
    clock sees the run only.
    """
    ready.set()
    go.wait()
    timed_run(half, output, "--workers", "1")


def _side_by_side(faces: Path, work: Path) -> float:
    """Seconds for two ``--workers 1`` runs on the two halves of ``faces``, at once."""
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    readies = [context.Event() for _ in range(2)]
    processes = [context.Process(target=_half_run,
                                 args=(half, work / f"side-{index}", readies[index], go))
                 for index, half in enumerate(_halves(faces, work))]
    for process in processes:
        process.start()
    for ready in readies:
        ready.wait()
    started = time.perf_counter()
    go.set()
    for process in processes:
        process.join()
    seconds = time.perf_counter() - started
    if any(process.exitcode != 0 for process in processes):
        raise RuntimeError("a side-by-side run failed")
    return seconds


class ProcessSampler:
    """Calls ``_read()`` every ``interval`` seconds on a thread while the ``with`` block runs,
    and once on entering and once on leaving; ``processes()`` lists this process and its
    descendants. Subclasses say what a read keeps."""

    def __init__(self, interval: float = 0.2):
        import psutil  # a dependency of distributed (the dask extra)

        self.interval = interval
        self.me = psutil.Process()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._sample, name="sampler", daemon=True)

    def __enter__(self):
        self._read()
        self._baseline()
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stopping.set()
        self.thread.join()
        self._read()

    def processes(self) -> list:
        return [self.me, *self.me.children(recursive=True)]

    def _sample(self) -> None:
        while not self.stopping.wait(self.interval):
            self._read()

    def _baseline(self) -> None:
        """After the first read, before sampling starts (nothing by default)."""

    def _read(self) -> None:
        raise NotImplementedError


class PeakRss(ProcessSampler):
    """The peak RSS of this process and of each descendant, sampled every ``interval`` s.

    ``peak_mib(workers=True)`` is the largest RSS any one descendant reached (a worker of
    ``--workers N``, a Dask worker under its nanny); ``workers=False`` this process's own.
    Per run, unlike ``ru_maxrss``, which keeps the largest of the whole benchmark.
    """

    def __init__(self, interval: float = 0.2):
        super().__init__(interval)
        self.peaks: dict[int, int] = {}

    def _read(self) -> None:
        import psutil

        for process in self.processes():
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue  # ended between the listing and the read
            self.peaks[process.pid] = max(self.peaks.get(process.pid, 0), rss)

    def peak_mib(self, *, workers: bool) -> float:
        found = [rss for pid, rss in self.peaks.items() if (pid != self.me.pid) == workers]
        return max(found, default=0) / 2**20


@contextlib.contextmanager
def local_cluster(memory_limit: str = "auto"):
    """A fresh 2x1 ``distributed.LocalCluster`` (2 processes x 1 thread, no dashboard).

    Yields its scheduler's address; on leaving, closes the client the run made the default
    and then the cluster. ``memory_limit`` is each worker's (Dask's ``"auto"`` shares the
    machine's memory among the workers), as ``dask worker --memory-limit`` takes it.
    """
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  memory_limit=memory_limit) as cluster:
        yield cluster.scheduler_address
        distributed.default_client().close()


def dask_run(faces: Path, output: Path, address: str, *flags: str) -> float:
    """Seconds of ``timed_run`` on Beam's DaskRunner against the scheduler at ``address``."""
    return timed_run(faces, output, "--runner", DASK_RUNNER, "--dask_client_address", address,
                     *flags)


def dask_local_run(faces: Path, output: Path,
                   memory_limit: str = "auto") -> tuple[float, PeakRss]:
    """Seconds of a run on Beam's DaskRunner on a fresh ``local_cluster``, and the RSS
    sampled during it (the launcher's includes the cluster's scheduler)."""
    with local_cluster(memory_limit) as address:
        with PeakRss() as memory:
            seconds = dask_run(faces, output, address)
    return seconds, memory


def table(faces: Path, count: int, work: Path) -> list[tuple]:
    rows = []
    with PeakRss() as memory:
        one = timed_run(faces, work / "w1", "--workers", "1")
    rows.append(("--workers 1 (in memory)", one, memory.peak_mib(workers=False)))
    ceiling = _side_by_side(faces, work)
    with PeakRss() as memory:
        two = timed_run(faces, work / "w2", "--workers", "2")
    rows.append(("--workers 2", two, memory.peak_mib(workers=True)))
    dask, memory = dask_local_run(faces, work / "dask")
    rows.append(("Dask LocalCluster 2x1", dask, memory.peak_mib(workers=True)))
    reference = _digest(work / "w1")
    for name in ("w2", "dask"):
        if _digest(work / name) != reference:
            raise RuntimeError(f"{name} wrote other shards than --workers 1")
    print(f"\n{count} faces (load average before: {os.getloadavg()[0]:.2f})")
    print(f"{'engine':28s} {'seconds':>8s} {'images/s':>9s} {'speed-up':>9s} {'MiB':>7s}")
    for name, seconds, mib in rows:
        print(f"{name:28s} {seconds:8.1f} {count / seconds:9.1f} {one / seconds:8.2f}x "
              f"{mib:7.0f}")
    print(f"{'ceiling: 2 x 1 on halves':28s} {ceiling:8.1f} {count / ceiling:9.1f} "
          f"{one / ceiling:8.2f}x       -")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=3000)
    parser.add_argument("--large", type=int, default=0,
                        help="also run at this many faces (e.g. 12000); 0 skips")
    parser.add_argument("--size", type=int, default=250)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="expnet-scaling-") as temp:
        work = Path(temp)
        results = {}
        for count in [args.faces] + ([args.large] if args.large else []):
            faces = work / f"faces-{count}"
            make_collection(faces, count, args.size)
            results[count] = table(faces, count, work / f"out-{count}")
        if args.large:
            for index, name in enumerate(("--workers 1", "--workers 2", "Dask")):
                ratio = results[args.large][index][1] / results[args.faces][index][1]
                print(f"{name}: {args.large} faces took {ratio:.2f}x the time of "
                      f"{args.faces}")


if __name__ == "__main__":
    main()
