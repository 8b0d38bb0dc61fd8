"""Timing shared by the benchmarks (`from timing import samples, timed`; bench/ is on sys.path when a script runs)."""
from __future__ import annotations

import statistics, time


def samples(fn, reps: int, warmup: int) -> list[float]:
    "Milliseconds of each of `reps` calls of fn() (after `warmup` calls), sorted."
    for _ in range(warmup): fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append((time.perf_counter() - t) * 1000)
    return sorted(ts)


def timed(fn, reps: int = 30, warmup: int = 3) -> float:
    "Median milliseconds of fn() over `reps` calls (after `warmup` calls)."
    return statistics.median(samples(fn, reps, warmup))
