"""Peak memory of a command and all its child processes (e.g. a 2-rank torchrun run with its data workers).

    python -m tools.peak_memory -- torchrun --nproc_per_node=2 -m tools.train --config ... --steps 20

Samples every process of the tree every ``--interval`` seconds and prints the peak of their summed resident
size (RSS: shared pages counted in every process that maps them, an upper bound) and of their summed
proportional size (PSS, from /proc/<pid>/smaps_rollup: shared pages split between the processes sharing them,
the memory the run really holds). Linux only. Exits with the command's exit status.
"""
import argparse
import os
import subprocess
import sys
import time


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def tree(pid):
    """``pid`` and all its descendants."""
    pids, stack = [], [pid]
    while stack:
        p = stack.pop()
        pids.append(p)
        stack += _children(p)
    return pids


def memory_kib(pid):
    """(RSS, PSS) of one process in KiB, (0, 0) if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line and not line.startswith(("0", "f")))
        return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.peak_memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    process = subprocess.Popen(command)
    peak_rss = peak_pss = peak_processes = 0
    while process.poll() is None:
        pids = tree(process.pid)
        rss, pss = map(sum, zip(*(memory_kib(p) for p in pids)))
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        peak_processes = max(peak_processes, len(pids))
        time.sleep(args.interval)
    print(f"peak memory of the process tree: {peak_pss / 2 ** 20:.2f} GiB PSS, {peak_rss / 2 ** 20:.2f} GiB RSS "
          f"(summed over up to {peak_processes} processes, sampled every {args.interval} s)", file=sys.stderr)
    return process.returncode


if __name__ == "__main__":
    raise SystemExit(main())
