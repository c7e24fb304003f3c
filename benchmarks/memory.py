"""python -m benchmarks.memory [--sizes 1000 10000]: peak RSS of generate at two sizes.

Peak memory of a local `expnet generate` run at 1,000 and 10,000 inputs.

Each run is a fresh process (the `expnet` CLI on the DirectRunner) over a collection of
unique 250 x 250 face images made as in `generate_speed.py`; its peak resident set size is
read from the kernel (`ru_maxrss` of the finished child). Streaming means the 10x larger run
should peak within 1.2x of the smaller one; the ratio is printed.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.generate_speed import make_collection

REPO = Path(__file__).resolve().parents[1]


def peak_rss_mib(command: list[str]) -> tuple[float, float]:
    """Run ``command`` in a child process; (its peak RSS in MiB, seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise RuntimeError("the child did not exceed an earlier child's peak: run sizes in "
                           "increasing order, one per process")
    return peak / 1024.0, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for count in sorted(args.sizes):
            folder = Path(scratch) / f"faces-{count}"
            make_collection(folder, count, 250)
            command = [sys.executable, "-m", "commands.expnet", "generate", "--input",
                       str(folder), "--output", str(Path(scratch) / f"out-{count}"), "--quiet"]
            results.append((count, *peak_rss_mib(command)))
    print("| inputs | peak RSS (MiB) | seconds |\n|---|---|---|")
    for count, peak, seconds in results:
        print(f"| {count} | {peak:.0f} | {seconds:.1f} |")
    print(f"\npeak ratio {results[-1][0]} / {results[0][0]} inputs: "
          f"{results[-1][1] / results[0][1]:.2f}x")


if __name__ == "__main__":
    main()
