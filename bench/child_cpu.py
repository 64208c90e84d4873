#!/usr/bin/env python3
"""child_cpu.py RUNS OUT CMD...: run CMD RUNS times and print the median CPU
time of the whole child process (user + sys, from getrusage, microsecond
resolution; GNU time's 10 ms is too coarse here) and the median wall time,
both in ms. The last run's stdout is written to OUT. A failing run fails."""

import resource
import statistics
import subprocess
import sys
import time


def main():
    runs, out, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    cpu, wall = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        with open(out, "wb") as stdout:
            subprocess.run(cmd, stdout=stdout, check=True)
        wall.append((time.monotonic() - start) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(
            (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
        )
    print(f"{statistics.median(cpu):.1f} {statistics.median(wall):.1f}")


if __name__ == "__main__":
    main()
