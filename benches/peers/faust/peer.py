"""The Faust peer of the side-by-side benchmarks (`benches/README.md`, "The harness contract").

One Faust application per run, written the way a Faust user writes one: typed `faust.Record`
models decoded from JSON, agents over topics, `group_by` to repartition, `Table`s with their
changelogs, windowed tables (`hopping`, `tumbling`) for W3. W4 (joins, which Faust lacks) is
done by hand with co-partitioned tables.

The command line is the contract's; it is parsed here and the app is handed to Faust's own
worker, which runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import mode.loop

# Faust's advice: choose the event loop before anything else imports asyncio machinery.
mode.loop.use("uvloop")

import faust  # noqa: E402

# Contract constants (the Rust form is `benches/harness/src/lib.rs`).
COMMIT_INTERVAL_S = 0.100
Q5_SIZE_S = 10
Q5_HOP_S = 2
Q7_SIZE_S = 10
Q7_SIZE_MS = Q7_SIZE_S * 1000
Q8_WITHIN_MS = 10_000
Q3_STATES = frozenset({"or", "id", "ca"})
Q3_CATEGORY = 10
PARTITIONS = 4  # of every input topic, hence of every changelog and repartition topic
STARTUP_TIMEOUT_S = 60.0

WORKLOADS = ("W0", "W1", "W2", "W3", "W4")
GUARANTEES = ("at_least_once", "exactly_once")

@dataclass(frozen=True)
class Options:
    workload: str
    guarantee: str
    brokers: str
    app_id: str
    output_prefix: str
    bids: str
    auctions: str
    persons: str
    words: str


@dataclass(frozen=True)
class InternalTopic:
    """A topic of Faust's own (changelog, repartition, leader) that `declare` creates."""

    name: str
    partitions: int
    config: dict[str, str]


# Models: nexmark's field names; `include_metadata=False` keeps `__faust` out of the
# JSON written, and decoding needs no metadata when the topic names the value type.
class Record(faust.Record, abstract=True, serializer="json", include_metadata=False):
    pass

class Bid(Record):
    auction: int
    bidder: int
    price: int
    channel: str
    url: str
    date_time: int
    extra: str

class Auction(Record):
    id: int
    item_name: str
    description: str
    initial_bid: int
    reserve: int
    date_time: int
    expires: int
    seller: int
    category: int
    extra: str

class Person(Record):
    id: int
    name: str
    email_address: str
    credit_card: str
    city: str
    state: str
    date_time: int
    extra: str

class Q1(Record):
    auction: int
    bidder: int
    price: int
    date_time: int

class Q2(Record):
    auction: int
    price: int

class Q3(Record):
    name: str
    city: str
    state: str
    id: int

class Q8(Record):
    id: int
    name: str
    auction: int


def parse_args(argv: Sequence[str]) -> Options:
    p = argparse.ArgumentParser(
        prog="benches/peers/faust/run",
        description="The Faust peer of the faustus side-by-side benchmarks.",
    )
    p.add_argument("--workload", required=True, choices=WORKLOADS)
    p.add_argument("--guarantee", required=True, choices=GUARANTEES)
    p.add_argument("--brokers", required=True, metavar="HOST:PORT")
    p.add_argument("--app-id", required=True, metavar="ID")
    p.add_argument("--output-prefix", required=True, metavar="P")
    p.add_argument("--bids", default="bench-bid", metavar="T")
    p.add_argument("--auctions", default="bench-auction", metavar="T")
    p.add_argument("--persons", default="bench-person", metavar="T")
    p.add_argument("--words", default="bench-words-100000", metavar="T")
    a = p.parse_args(argv)
    if not a.app_id.strip() or any(c.isspace() or c == "/" for c in a.app_id):
        p.error(f"--app-id must be a non-empty name without spaces or '/', got {a.app_id!r}")
    host, sep, port = a.brokers.rpartition(":")
    if not sep or not host or not port.isdigit():
        p.error(f"--brokers must be HOST:PORT, got {a.brokers!r}")
    for flag in ("output_prefix", "bids", "auctions", "persons", "words"):
        if not getattr(a, flag):
            p.error(f"--{flag.replace('_', '-')} must not be empty")
    return Options(
        workload=a.workload,
        guarantee=a.guarantee,
        brokers=a.brokers,
        app_id=a.app_id,
        output_prefix=a.output_prefix,
        bids=a.bids,
        auctions=a.auctions,
        persons=a.persons,
        words=a.words,
    )


def data_dir(app_id: str) -> Path:
    """A fresh data directory per app id (Faust keeps table state and its offsets there)."""
    d = Path(tempfile.gettempdir()) / f"faust-peer-{app_id}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def build_app(opts: Options) -> tuple[Any, list[InternalTopic]]:
    """The Faust app of `opts.workload`, and the internal topics it will use."""
    app = faust.App(
        opts.app_id,
        broker=f"kafka://{opts.brokers}",
        store="memory://",  # Faust's default table store; state is rebuilt from changelogs
        datadir=data_dir(opts.app_id),
        autodiscover=False,
        processing_guarantee=opts.guarantee,
        broker_commit_interval=COMMIT_INTERVAL_S,
        # Raw JSON keys and values: 1001, "w12", [1001, 1700000000000] (no model envelope).
        key_serializer="json",
        value_serializer="json",
        # The contract's producer and consumer settings, as far as Faust exposes them.
        producer_acks=-1,
        producer_linger=0.005,
        producer_max_batch_size=262_144,
        producer_compression_type=None,
        consumer_auto_offset_reset="earliest",
        # Internal topics (changelogs, repartition topics): see `declare`.
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        web_enabled=False,
    )

    repartition_topics: list[Any] = []

    def out(suffix: str) -> Any:
        # Output topics are created by the harness; Faust only writes to them.
        return app.topic(opts.output_prefix + suffix, internal=False)

    def repartition(name: str, key_type: type, value_type: type) -> Any:
        # Faust names a `group_by` topic after the agent and the source topic, not the app, so
        # two apps reading the same input would share it; name it after the app instead.
        topic = app.topic(
            f"{opts.app_id}-{name}-repartition",
            partitions=PARTITIONS,
            internal=True,
            key_type=key_type,
            value_type=value_type,
        )
        repartition_topics.append(topic)
        return topic

    if opts.workload in ("W0", "W1", "W3"):
        bids = app.topic(opts.bids, key_type=int, value_type=Bid)

    if opts.workload == "W0":
        w0_out = out("w0")

        @app.agent(bids)
        async def w0(stream: Any) -> None:
            async for key, bid in stream.items():
                await w0_out.send(key=key, value=bid)

    elif opts.workload == "W1":
        q1_out, q2_out = out("w1-q1"), out("w1-q2")

        @app.agent(bids)
        async def w1(stream: Any) -> None:
            async for bid in stream:
                await q1_out.send(
                    key=bid.auction,
                    value=Q1(
                        auction=bid.auction,
                        bidder=bid.bidder,
                        price=bid.price * 908 // 1000,
                        date_time=bid.date_time,
                    ),
                )
                if bid.auction % 123 == 0:
                    await q2_out.send(key=bid.auction, value=Q2(auction=bid.auction, price=bid.price))

    elif opts.workload == "W2":
        words = app.topic(opts.words, value_type=str)
        w2_out = out("w2")
        counts = app.Table("word-counts", default=int, key_type=str, value_type=int)

        @app.agent(words)
        async def w2(stream: Any) -> None:
            by_word = stream.group_by(
                lambda word: word, name="by-word", topic=repartition("by-word", str, str)
            )
            async for word in by_word:
                counts[word] += 1
                await w2_out.send(key=word, value=counts[word])

    elif opts.workload == "W3":
        q5_out, q7_out = out("w3-q5"), out("w3-q7")

        def bid_time(event: Any = None) -> float:
            # Event time is the bid's `date_time` (ms); Faust's windows work in seconds.
            return event.value.date_time / 1000.0

        # No `expires`: Faust expires windows against the wall clock, and the generated
        # stream's event times lie in the past; the contract's one-hour grace outlives the run.
        q5 = app.Table("q5-bids", default=int).hopping(Q5_SIZE_S, Q5_HOP_S).relative_to(bid_time)
        q7 = app.Table("q7-max-price", default=int).tumbling(Q7_SIZE_S).relative_to(bid_time)
        q5_windows = q5.table.window

        @app.agent(bids)
        async def w3_q5(stream: Any) -> None:
            # Bids are keyed (so partitioned) by auction already: no repartition needed.
            async for event in stream.events():
                bid = event.value
                q5[bid.auction] += 1
                for window in q5_windows.ranges(bid_time(event)):
                    await q5_out.send(
                        key=[bid.auction, round(window[0] * 1000)],
                        value=q5.table[(bid.auction, window)],
                    )

        def q7_window_start(bid: Any) -> int:
            return bid.date_time - bid.date_time % Q7_SIZE_MS

        @app.agent(bids)
        async def w3_q7(stream: Any) -> None:
            # One max per window over all bids: repartition by the window, so each window's
            # maximum lives in exactly one partition of the table.
            by_window = stream.group_by(
                q7_window_start, name="q7-by-window", topic=repartition("q7-by-window", int, Bid)
            )
            async for bid in by_window:
                if "max" not in q7 or bid.price > q7["max"].value():
                    q7["max"] = bid.price
                    await q7_out.send(key=q7_window_start(bid), value=bid.price)

    elif opts.workload == "W4":
        persons = app.topic(opts.persons, key_type=int, value_type=Person)
        auctions = app.topic(opts.auctions, key_type=int, value_type=Auction)
        q3_out, q8_out = out("w4-q3"), out("w4-q8")
        # Both agents below read both sides' tables: persons arrive keyed by id, auctions are
        # repartitioned by seller, so a person and their auctions share a partition (the
        # same JSON key bytes and the same murmur2 partitioner on both topics).
        #   q3: person id -> [name, city, state] of persons in Q3_STATES;
        #       seller -> ids of their category-10 auctions.
        q3_sellers = app.Table("q3-sellers", key_type=int)
        q3_auctions = app.Table("q3-auctions-by-seller", default=list, key_type=int)
        #   q8: person id -> [[date_time, name], ...]; seller -> [[date_time, auction id], ...].
        q8_persons = app.Table("q8-persons", default=list, key_type=int)
        q8_auctions = app.Table("q8-auctions-by-seller", default=list, key_type=int)

        def q8_near(a: int, b: int) -> bool:
            return abs(a - b) <= Q8_WITHIN_MS

        @app.agent(persons)
        async def w4_persons(stream: Any) -> None:
            async for person in stream:
                pid = person.id
                # q3: the incremental join's person side (an update can turn a seller's
                # auctions in or out of the result; out means a tombstone).
                was = q3_sellers.get(pid)
                if person.state in Q3_STATES:
                    now = [person.name, person.city, person.state]
                    q3_sellers[pid] = now
                else:
                    now = None
                    if was is not None:
                        del q3_sellers[pid]
                if now != was:
                    for auction_id in q3_auctions[pid]:
                        if now is None:
                            await q3_out.send(key=auction_id, value=None, value_serializer="raw")
                        else:
                            name, city, state = now
                            await q3_out.send(
                                key=auction_id,
                                value=Q3(name=name, city=city, state=state, id=auction_id),
                            )
                # q8: remember the person, join with the seller's auctions seen so far.
                q8_persons[pid] = q8_persons[pid] + [[person.date_time, person.name]]
                for at, auction_id in q8_auctions[pid]:
                    if q8_near(person.date_time, at):
                        await q8_out.send(
                            key=pid, value=Q8(id=pid, name=person.name, auction=auction_id)
                        )

        @app.agent(auctions)
        async def w4_auctions(stream: Any) -> None:
            by_seller = stream.group_by(
                Auction.seller,
                name="auctions-by-seller",
                topic=repartition("auctions-by-seller", int, Auction),
            )
            async for auction in by_seller:
                seller = auction.seller
                if auction.category == Q3_CATEGORY:
                    q3_auctions[seller] = q3_auctions[seller] + [auction.id]
                    person = q3_sellers.get(seller)
                    if person is not None:
                        name, city, state = person
                        await q3_out.send(
                            key=auction.id,
                            value=Q3(name=name, city=city, state=state, id=auction.id),
                        )
                q8_auctions[seller] = q8_auctions[seller] + [[auction.date_time, auction.id]]
                for pt, name in q8_persons[seller]:
                    if q8_near(pt, auction.date_time):
                        await q8_out.send(
                            key=seller, value=Q8(id=seller, name=name, auction=auction.id)
                        )

    internal = [
        InternalTopic(f"{opts.app_id}-__assignor-__leader", 1, {})  # Faust's leader election
    ]
    for table in app.tables.values():
        changelog = table.changelog_topic
        policy = ",".join(
            flag
            for flag, on in (("compact", changelog.compacting), ("delete", changelog.deleting))
            if on
        )
        config = {"cleanup.policy": policy} if policy else {}
        config.update(changelog.config or {})
        internal.append(InternalTopic(changelog.get_topic_name(), PARTITIONS, config))
    internal += [InternalTopic(t.get_topic_name(), PARTITIONS, {}) for t in repartition_topics]
    return app, internal


async def declare(brokers: str, topics: Sequence[InternalTopic]) -> None:
    """Create the app's internal topics, as Faust would, and wait until they have leaders.

    Faust declares them itself at start-up, but its consumer group joins at the same time: a
    topic created a moment before the join is seen with no partitions (so a table's first write
    fails Faust's co-partitioning check) or not at all (so a repartition topic is consumed only
    after a rebalance, about a minute later). Creating them first is what a deployment does;
    Faust then finds them in place.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=brokers, client_id="faust-peer-declare")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(t.name, t.partitions, 1, topic_configs=t.config)
            for t in topics
            if t.name not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        want = {t.name: t.partitions for t in topics}
        while True:
            described = await admin.describe_topics(list(want))
            ready = {
                d["topic"]
                for d in described
                if d["error_code"] == 0
                and len(d["partitions"]) == want[d["topic"]]
                and all(p["leader"] >= 0 for p in d["partitions"])
            }
            if ready == set(want):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"internal topics without leaders after {STARTUP_TIMEOUT_S} s: "
                    f"{sorted(set(want) - ready)}"
                )
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    app, internal = build_app(opts)
    asyncio.run(declare(opts.brokers, internal))

    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.spinner = None  # the start-up spinner writes terminal escapes even to a log file
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
