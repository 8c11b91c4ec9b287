"""Self-check of the Faust peer against a model, on small generated input.

Creates its own input and output topics (4 partitions) on the given broker, writes a few
hundred Nexmark-like records and Zipf-like words in the contract's JSON shapes, runs
`run --workload W...` for each requested workload and guarantee, reads the output topics back
until they equal the model computed here (or a deadline passes), checks the raw bytes carry no
Faust metadata, stops the peer with SIGTERM and deletes the topics.

    .tools/faust-venv/bin/python benches/peers/faust/selfcheck.py --brokers 127.0.0.1:9492

Exit status 0 when every run matched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

HERE = Path(__file__).resolve().parent
BASE_MS = 1_700_000_000_000
PARTITIONS = 4
STATES = ["or", "id", "ca", "wa", "az", "ny"]

Json = Any
Model = dict[str, tuple[str, Any]]  # output suffix -> ("stream", Counter) | ("table", dict)


def dumps(v: Json) -> bytes:
    return json.dumps(v, separators=(",", ":")).encode()


def canon(raw: bytes | None) -> str | None:
    return None if raw is None else json.dumps(json.loads(raw), sort_keys=True)


def generate(n_bids: int, n_words: int, seed: int) -> dict[str, list[tuple[Json, Json]]]:
    rng = random.Random(seed)
    persons: list[dict[str, Any]] = []
    auctions: list[dict[str, Any]] = []
    bids: list[dict[str, Any]] = []
    t = BASE_MS
    for i in range(n_bids):  # ids start low enough for some auctions to be multiples of 123
        t += rng.randint(5, 120)
        if i % 10 == 0:
            pid = 1000 + len(persons)
            persons.append(
                {"id": pid, "name": f"p{pid}", "email_address": f"p{pid}@x", "credit_card": "1",
                 "city": f"c{pid % 7}", "state": rng.choice(STATES), "date_time": t, "extra": ""}
            )
        if i % 4 == 0:
            aid = 950 + len(auctions)
            # Mostly a recent seller (joins within 10 s), sometimes an old one (no q8 match).
            recent = persons[-3:] if rng.random() < 0.8 else persons[: max(1, len(persons) // 2)]
            seller = rng.choice(recent)["id"]
            auctions.append(
                {"id": aid, "item_name": f"i{aid}", "description": "d", "initial_bid": 10,
                 "reserve": 20, "date_time": t, "expires": t + 20_000, "seller": seller,
                 "category": rng.randint(10, 14), "extra": ""}
            )
        auction = rng.choice(auctions[-40:])["id"]
        bids.append(
            {"auction": auction, "bidder": rng.choice(persons)["id"],
             "price": rng.randint(1, 10_000), "channel": "web", "url": "u",
             "date_time": t, "extra": ""}
        )
    vocab = 500
    weights = [1.0 / r for r in range(1, vocab + 1)]
    words = [f"w{r}" for r in rng.choices(range(1, vocab + 1), weights=weights, k=n_words)]
    return {
        "person": [(p["id"], p) for p in persons],
        "auction": [(a["id"], a) for a in auctions],
        "bid": [(b["auction"], b) for b in bids],
        "words": [(None, w) for w in words],
    }


def hopping_starts(t: int, size: int, hop: int) -> list[int]:
    s, out = t - t % hop, []
    while s > t - size:
        if s >= 0:
            out.append(s)
        s -= hop
    return out[::-1]


def model(workload: str, data: dict[str, list[tuple[Json, Json]]]) -> Model:
    def stream(pairs: list[tuple[Json, Json]]) -> tuple[str, Counter]:
        return ("stream", Counter((json.dumps(k, sort_keys=True), json.dumps(v, sort_keys=True))
                                  for k, v in pairs))

    def table(d: dict) -> tuple[str, dict]:
        return ("table", {json.dumps(json.loads(k), sort_keys=True): json.dumps(v, sort_keys=True)
                          for k, v in d.items()})

    bids = [b for _, b in data["bid"]]
    if workload == "W0":
        return {"w0": stream(data["bid"])}
    if workload == "W1":
        return {
            "w1-q1": stream([(b["auction"], {"auction": b["auction"], "bidder": b["bidder"],
                                             "price": b["price"] * 908 // 1000,
                                             "date_time": b["date_time"]}) for b in bids]),
            "w1-q2": stream([(b["auction"], {"auction": b["auction"], "price": b["price"]})
                             for b in bids if b["auction"] % 123 == 0]),
        }
    if workload == "W2":
        return {"w2": table({json.dumps(w): c for w, c in Counter(w for _, w in data["words"]).items()})}
    if workload == "W3":
        q5: Counter = Counter()
        q7: dict[str, int] = {}
        for b in bids:
            for s in hopping_starts(b["date_time"], 10_000, 2_000):
                q5[json.dumps([b["auction"], s])] += 1
            ws = json.dumps(b["date_time"] - b["date_time"] % 10_000)
            q7[ws] = max(q7.get(ws, 0), b["price"])
        return {"w3-q5": table(dict(q5)), "w3-q7": table(q7)}
    if workload == "W4":
        persons = {p["id"]: p for _, p in data["person"]}
        q3 = {}
        q8 = []
        for _, a in data["auction"]:
            p = persons.get(a["seller"])
            if a["category"] == 10 and p is not None and p["state"] in ("or", "id", "ca"):
                q3[json.dumps(a["id"])] = {"name": p["name"], "city": p["city"],
                                           "state": p["state"], "id": a["id"]}
            if p is not None and abs(p["date_time"] - a["date_time"]) <= 10_000:
                q8.append((p["id"], {"id": p["id"], "name": p["name"], "auction": a["id"]}))
        return {"w4-q3": table(q3), "w4-q8": stream(q8)}
    raise ValueError(workload)


async def create_topics(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])


async def produce(brokers: str, topic: str, pairs: list[tuple[Json, Json]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=5)
    await producer.start()
    try:
        for k, v in pairs:
            # aiokafka's default partitioner is the Java client's murmur2 (keyed records).
            await producer.send(topic, value=dumps(v), key=None if k is None else dumps(k))
        await producer.flush()
    finally:
        await producer.stop()


class Reader:
    """Reads output topics from the start and folds them the way the checker does."""

    def __init__(self, brokers: str, topics: dict[str, str], isolation: str) -> None:
        self.topics = topics  # topic -> suffix
        self.consumer = AIOKafkaConsumer(bootstrap_servers=brokers, isolation_level=isolation,
                                         enable_auto_commit=False, auto_offset_reset="earliest")
        self.streams: dict[str, Counter] = {s: Counter() for s in topics.values()}
        self.tables: dict[str, dict] = {s: {} for s in topics.values()}
        self.problems: list[str] = []

    async def start(self) -> None:
        await self.consumer.start()
        tps = [TopicPartition(t, p) for t in self.topics for p in range(PARTITIONS)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)

    async def poll(self, timeout_ms: int) -> None:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)
        for tp, records in batches.items():
            suffix = self.topics[tp.topic]
            for r in records:
                for part, raw in (("key", r.key), ("value", r.value)):
                    if raw is not None and b"__faust" in raw:
                        self.problems.append(f"{tp.topic}: Faust metadata in the {part}: {raw[:80]!r}")
                key, value = canon(r.key), canon(r.value)
                self.streams[suffix][(key, value)] += 1
                if value is None:
                    self.tables[suffix].pop(key, None)
                else:
                    self.tables[suffix][key] = value

    def matches(self, want: Model) -> bool:
        return all((self.streams[s] if kind == "stream" else self.tables[s]) == expected
                   for s, (kind, expected) in want.items())

    def diff(self, want: Model) -> str:
        lines = []
        for s, (kind, expected) in want.items():
            got = self.streams[s] if kind == "stream" else self.tables[s]
            if got != expected:
                if kind == "stream":
                    missing, extra = expected - got, got - expected
                else:
                    missing = {k: f"{v} (got {got.get(k)})" for k, v in expected.items()
                               if got.get(k) != v}
                    extra = {k: v for k, v in got.items() if k not in expected}
                lines.append(f"  {s}: got {sum(got.values()) if kind == 'stream' else len(got)}"
                             f" want {sum(expected.values()) if kind == 'stream' else len(expected)};"
                             f" missing/wrong e.g. {list(missing.items())[:3]}; extra e.g. {list(extra.items())[:3]}")
        return "\n".join(lines)

    async def stop(self) -> None:
        await self.consumer.stop()


async def run_one(brokers: str, run_id: str, inputs: dict[str, str], workload: str,
                  guarantee: str, want: Model, timeout_s: float) -> bool:
    prefix = f"{run_id}-out-{workload.lower()}-{guarantee}-"
    topics = {prefix + s: s for s in want}
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        await create_topics(admin, list(topics))
    finally:
        await admin.close()
    cmd = [str(HERE / "run"), "--workload", workload, "--guarantee", guarantee,
           "--brokers", brokers, "--app-id", f"{run_id}-{workload.lower()}-{guarantee}",
           "--output-prefix", prefix, "--bids", inputs["bid"], "--auctions", inputs["auction"],
           "--persons", inputs["person"], "--words", inputs["words"]]
    started = time.monotonic()
    peer = subprocess.Popen(cmd)
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    reader = Reader(brokers, topics, isolation)
    await reader.start()
    ok = False
    try:
        while time.monotonic() - started < timeout_s:
            if peer.poll() is not None:
                print(f"  peer exited early with status {peer.returncode}")
                break
            await reader.poll(500)
            if reader.matches(want):
                ok = True
                break
        # Let anything extra (duplicates, wrong late updates) arrive before judging.
        if ok:
            await reader.poll(1500)
            ok = reader.matches(want)
    finally:
        await reader.stop()
        if peer.poll() is None:
            peer.send_signal(signal.SIGTERM)
            try:
                peer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                peer.kill()
                peer.wait()
    took = time.monotonic() - started
    sizes = {s: (sum(e.values()) if k == "stream" else len(e)) for s, (k, e) in want.items()}
    status = "ok" if ok and not reader.problems else "FAILED"
    print(f"{workload} {guarantee}: {status} in {took:.1f} s, outputs {sizes}, peer exit {peer.returncode}")
    if not ok:
        print(reader.diff(want))
    for p in reader.problems[:5]:
        print("  " + p)
    return ok and not reader.problems


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--workloads", default="W0,W1,W2,W3,W4")
    ap.add_argument("--guarantees", default="at_least_once,exactly_once")
    ap.add_argument("--bids", type=int, default=400)
    ap.add_argument("--words", type=int, default=2000)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    ap.add_argument("--keep-topics", action="store_true")
    a = ap.parse_args()
    # Fresh topics' leaders take a moment to be known; aiokafka retries and logs each retry.
    logging.basicConfig(level=logging.ERROR)
    run_id = f"fsc-{uuid.uuid4().hex[:8]}"
    data = generate(a.bids, a.words, seed=7)
    inputs = {kind: f"{run_id}-{kind}" for kind in data}
    admin = AIOKafkaAdminClient(bootstrap_servers=a.brokers)
    await admin.start()
    try:
        await create_topics(admin, list(inputs.values()))
        for kind, pairs in data.items():
            await produce(a.brokers, inputs[kind], pairs)
        print(f"input: {', '.join(f'{len(p)} {k}' for k, p in data.items())} under {run_id}-*")
        all_ok = True
        for w in a.workloads.split(","):
            for g in a.guarantees.split(","):
                all_ok &= await run_one(a.brokers, run_id, inputs, w, g, model(w, data), a.timeout)
        if not a.keep_topics:
            names = [t for t in await admin.list_topics() if t.startswith(run_id)]
            await admin.delete_topics(names)
    finally:
        await admin.close()
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
