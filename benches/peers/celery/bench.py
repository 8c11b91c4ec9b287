"""Times Celery chords and chains like bench-workflows times faustus' (see README.md).

    bench.py --job chords|chains --count K [--members N] --results FILE

Starts K chords of N members (or K chains of three steps) at once, waits for every result,
checks each, and appends one JSON line to FILE.
"""

import argparse
import json
import time

from celery import chain, chord, group

from tasks import add1, collect, double, times10, triple


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--job", required=True, choices=["chords", "chains"])
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--results", required=True)
    p.add_argument("--timeout-secs", type=float, default=600)
    a = p.parse_args()
    started = time.monotonic()
    if a.job == "chords":
        pending = [
            chord(group(double.s(v) for v in range(a.members)))(collect.s())
            for _ in range(a.count)
        ]
        expected = [[v * 2 for v in range(a.members)]] * a.count
        units = a.count
    else:
        pending = [chain(add1.s(i), triple.s(), times10.s())() for i in range(a.count)]
        expected = [(i + 1) * 3 * 10 for i in range(a.count)]
        units = a.count * 3
    answer = "ok"
    for i, (result, want) in enumerate(zip(pending, expected)):
        left = a.timeout_secs - (time.monotonic() - started)
        try:
            got = result.get(timeout=max(left, 0.1))
        except Exception as e:  # a timeout or a failed task
            answer = f"{i}: {type(e).__name__}: {e}"
            break
        if got != want:
            answer = f"{i}: expected {want}, got {got}"
            break
    seconds = time.monotonic() - started
    row = {
        "kind": "workflow",
        "system": "celery",
        "job": a.job,
        "guarantee": "celery_defaults",
        "count": a.count,
        "members": a.members if a.job == "chords" else 3,
        "seconds": seconds,
        "per_sec": units / seconds,
        "answer": answer,
    }
    print(json.dumps(row))
    with open(a.results, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
