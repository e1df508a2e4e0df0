"""Timing rules shared by the peer benchmarks, mirroring bench/common.ts.

A trial is one timed unit of work. Each trial records the cores other processes used meanwhile
(/proc/stat busy ticks minus this process's own rusage, which covers every thread of the process,
OpenBLAS's included); a trial is clean when others used < 0.10 cores. We wait (at most
BENCH_QUIET_WAIT seconds, default 30, and twice that in all per measurement) for an idle machine
before measuring and after each disturbed trial, run until `trials` clean trials or `max_trials` in all, and take the median over
clean trials when there are at least 3, else over all trials.

A peer script reads one JSON config from argv[1] and prints one JSON object as its last line.
"""
import json
import os
import resource
import sys
import time

CLEAN_OTHER_CORES = 0.10
QUIET_WINDOW_S = 0.5
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_ticks():
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal ...
    return fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + (fields[7] if len(fields) > 7 else 0)


def process_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sample():
    return (time.perf_counter(), machine_busy_ticks(), process_cpu_seconds())


def other_cores(a, b):
    wall = b[0] - a[0]
    if a[1] is None or b[1] is None or wall <= 0:
        return 0.0
    machine = (b[1] - a[1]) / TICKS_PER_SECOND
    return max(0.0, (machine - (b[2] - a[2])) / wall)


def quiet_wait_limit():
    try:
        v = float(os.environ.get("BENCH_QUIET_WAIT", "30"))
        return v if v >= 0 else 30.0
    except ValueError:
        return 30.0


def wait_for_quiet(limit=None):
    limit = quiet_wait_limit() if limit is None else limit
    start = time.perf_counter()
    while True:
        a = sample()
        time.sleep(QUIET_WINDOW_S)
        load = other_cores(a, sample())
        waited = time.perf_counter() - start
        if load < CLEAN_OTHER_CORES or waited >= limit:
            return waited, load


def time_trial(fn):
    a = sample()
    fn()
    b = sample()
    other = other_cores(a, b)
    return {"seconds": b[0] - a[0], "cpu_seconds": b[2] - a[2], "other_cores": other,
            "clean": other < CLEAN_OTHER_CORES}


def median(xs):
    s = sorted(xs)
    if not s:
        return float("nan")
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def summarise(trials):
    clean = [t for t in trials if t["clean"]]
    pool = clean if len(clean) >= 3 else trials
    wall = sum(t["seconds"] for t in trials)
    cpu = sum(t["cpu_seconds"] for t in trials)
    return {
        "median_s": median([t["seconds"] for t in pool]),
        "n_trials": len(trials),
        "n_clean": len(clean),
        "cpu_per_wall": cpu / wall if wall > 0 else 0.0,
        "other_cores": median([t["other_cores"] for t in trials]),
    }


def run_trials(fn, trials, max_trials=None, warmup=1):
    max_trials = 3 * trials if max_trials is None else max_trials
    for _ in range(warmup):
        fn()
    # each wait is capped by the limit, and all waits of one measurement by twice the limit
    budget = [2 * quiet_wait_limit()]

    def wait():
        waited, _ = wait_for_quiet(min(quiet_wait_limit(), max(0.0, budget[0])))
        budget[0] -= waited

    wait()
    done = []
    clean = 0
    while clean < trials and len(done) < max_trials:
        t = time_trial(fn)
        done.append(t)
        if t["clean"]:
            clean += 1
        elif clean < trials and len(done) < max_trials:
            wait()
    return summarise(done)


def calibrate_reps(fn, min_seconds=0.25):
    fn()
    reps = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        s = time.perf_counter() - t0
        if s >= min_seconds:
            return reps
        reps = max(reps * 2, int(reps * min_seconds * 1.2 / s) + 1) if s > 0 else reps * 2


def bench_repeated(fn, trials, max_trials=None, min_seconds=0.25):
    """Trials of `reps` back-to-back calls of fn, each trial lasting >= min_seconds."""
    reps = calibrate_reps(fn, min_seconds)

    def trial():
        for _ in range(reps):
            fn()

    m = run_trials(trial, trials, max_trials, warmup=0)
    m["reps"] = reps
    m["per_call_s"] = m["median_s"] / reps
    return m


def read_config():
    return json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}


def setup_torch(threads):
    """Imports torch with the given intra-op thread count (OMP_WAIT_POLICY=PASSIVE is set by the caller)."""
    import torch
    torch.set_num_threads(threads)
    return torch


def emit(obj):
    print(json.dumps(obj))
