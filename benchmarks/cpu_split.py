"""python -m benchmarks.cpu_split [--faces 3000] [--engines w1 w2 dask]: where a run's CPU goes.

Runs ``expnet generate`` on unique 250 x 250 faces (as in generate_speed.py) with
``--workers 1``, ``--workers 2`` and Beam's DaskRunner on a 2x1 ``distributed.LocalCluster``,
and samples every 0.2 s the CPU time (user + system) of the launching process, thread by
thread, and of each of its descendant processes. Prints per engine the wall time, the
launcher's CPU split by thread (its main thread builds and drives the pipeline; on Dask its
event-loop thread runs the scheduler and the client; on ``--workers 2`` its gRPC threads
talk to the workers), the workers' CPU, and two ratios against ``--workers 1``: the CPU the
engine spent per face, and the wall time two cores would need if that CPU were spread
perfectly (CPU / 2). A run slower than that floor waited (barriers, idle workers); a floor
above the one-process run's half is work the engine added (coordination, shuffles).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
from pathlib import Path

from benchmarks.generate_speed import make_collection
from benchmarks.scaling import ProcessSampler, dask_run, local_cluster, timed_run


class CpuSampler(ProcessSampler):
    """Keeps the last CPU seconds seen of every thread of this process and every descendant.

    Sampled every ``interval`` s, so a process or thread that ends loses at most its last
    interval. ``launcher_threads()`` gives this process's CPU by thread name (the sampler's
    own thread left out), ``descendants()`` each descendant's, both counted from when the
    sampler started.
    """

    def __init__(self, interval: float = 0.2):
        super().__init__(interval)
        self.threads: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.cpu: dict[int, float] = {}
        self.start_threads: dict[int, float] = {}
        self.start_cpu: dict[int, float] = {}

    def _baseline(self) -> None:
        self.start_threads = dict(self.threads)
        self.start_cpu = dict(self.cpu)

    def _read(self) -> None:
        import psutil

        for thread in threading.enumerate():
            if thread.native_id is not None:
                self.names.setdefault(thread.native_id, thread.name)
        for thread in self.me.threads():
            self.threads[thread.id] = thread.user_time + thread.system_time
        for process in self.processes()[1:]:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue  # ended between the listing and the read
            self.cpu[process.pid] = times.user + times.system

    def launcher_threads(self) -> dict[str, float]:
        """CPU seconds of this process by thread name (unnamed threads as ``native``)."""
        found: dict[str, float] = {}
        for native, seconds in self.threads.items():
            if native == self.thread.native_id:
                continue
            name = self.names.get(native, "native").split("-")[0].split(" ")[0]
            spent = seconds - self.start_threads.get(native, 0.0)
            found[name] = found.get(name, 0.0) + spent
        return found

    def descendants(self) -> list[float]:
        """CPU seconds of each descendant process, largest first."""
        spent = [seconds - self.start_cpu.get(pid, 0.0) for pid, seconds in self.cpu.items()]
        return sorted((seconds for seconds in spent if seconds > 0.05), reverse=True)


def _run(engine: str, faces: Path, output: Path) -> tuple[float, CpuSampler]:
    """Wall seconds of one run of ``engine`` and its sampler."""
    if engine != "dask":
        with CpuSampler() as cpu:
            seconds = timed_run(faces, output, "--workers", engine[1:])
        return seconds, cpu
    with local_cluster() as address:
        with CpuSampler() as cpu:
            seconds = dask_run(faces, output, address)
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=3000)
    parser.add_argument("--engines", nargs="+", choices=["w1", "w2", "dask"],
                        default=["w1", "w2", "dask"])
    args = parser.parse_args()
    engines = ["w1", *[engine for engine in args.engines if engine != "w1"]]
    with tempfile.TemporaryDirectory(prefix="expnet-cpu-split-") as temp:
        work = Path(temp)
        make_collection(work / "faces", args.faces, 250)
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        rows = {}
        for engine in engines:
            seconds, cpu = _run(engine, work / "faces", work / engine)
            rows[engine] = (seconds, cpu.launcher_threads(), cpu.descendants())
    w1_seconds, w1_threads, w1_children = rows["w1"]
    w1_cpu = sum(w1_threads.values()) + sum(w1_children)
    print(f"\n{args.faces} faces")
    for engine, (seconds, threads, children) in rows.items():
        launcher = sum(threads.values())
        total = launcher + sum(children)
        split = ", ".join(f"{name} {spent:.1f}" for name, spent in
                          sorted(threads.items(), key=lambda item: -item[1]) if spent >= 0.1)
        print(f"{engine:5s} wall {seconds:6.1f} s  CPU {total:6.1f} s "
              f"({total / w1_cpu:4.2f}x w1's)  floor on 2 cores {total / 2:6.1f} s  "
              f"speed-up {w1_seconds / seconds:4.2f}x")
        print(f"      launcher {launcher:5.1f} s: {split}")
        print(f"      workers  {sum(children):5.1f} s: "
              + ", ".join(f"{spent:.1f}" for spent in children))


if __name__ == "__main__":
    main()
