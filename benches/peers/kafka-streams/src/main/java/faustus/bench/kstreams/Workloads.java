package faustus.bench.kstreams;

import faustus.bench.kstreams.Model.Auction;
import faustus.bench.kstreams.Model.AuctionWindow;
import faustus.bench.kstreams.Model.Bid;
import faustus.bench.kstreams.Model.Person;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.TopologyConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.kstream.TableJoined;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The workloads of the harness contract as Kafka Streams topologies. Internal topics and state
 * stores are named, so their names do not depend on the order operators were added in. (The
 * foreign-key join's result is not materialized, yet Kafka Streams 4.4 still reports a generated
 * name for it, so {@code ensure.explicit.internal.resource.naming} cannot be turned on.)
 */
public final class Workloads {
    private Workloads() {}

    /** A workload of the harness contract. */
    public enum Workload {
        W0, W1, W2, W3, W4
    }

    /** The input topics of a run. */
    public record Inputs(String bids, String auctions, String persons, String words) {}

    /** The output topics of {@code workload} for the output prefix {@code prefix}. */
    public static List<String> outputs(Workload workload, String prefix) {
        return switch (workload) {
            case W0 -> List.of(prefix + "w0");
            case W1 -> List.of(prefix + "w1-q1", prefix + "w1-q2");
            case W2 -> List.of(prefix + "w2");
            case W3 -> List.of(prefix + "w3-q5", prefix + "w3-q7");
            case W4 -> List.of(prefix + "w4-q3", prefix + "w4-q8");
        };
    }

    /** The input topics {@code workload} reads. */
    public static List<String> inputs(Workload workload, Inputs in) {
        return switch (workload) {
            case W0, W1, W3 -> List.of(in.bids());
            case W2 -> List.of(in.words());
            case W4 -> List.of(in.persons(), in.auctions());
        };
    }

    /**
     * The topology of {@code workload}, reading {@code in} and writing topics named {@code prefix}+...;
     * {@code config} is the application's configuration (its topology settings apply).
     */
    public static Topology build(Workload workload, Inputs in, String prefix, Properties config) {
        StreamsBuilder builder = new StreamsBuilder(new TopologyConfig(new StreamsConfig(config)));
        switch (workload) {
            case W0 -> w0(builder, in, prefix);
            case W1 -> w1(builder, in, prefix);
            case W2 -> w2(builder, in, prefix);
            case W3 -> w3(builder, in, prefix);
            case W4 -> w4(builder, in, prefix);
        }
        return builder.build();
    }

    /** W0: bids decoded and re-encoded (by the serdes); the key passes through as it is. */
    static void w0(StreamsBuilder builder, Inputs in, String prefix) {
        builder.stream(in.bids(), Consumed.with(Serdes.ByteArray(), Json.BID))
                .to(prefix + "w0", Produced.with(Serdes.ByteArray(), Json.BID));
    }

    /** W1: q1 (map) and q2 (filter) as two branches over the same bids. */
    static void w1(StreamsBuilder builder, Inputs in, String prefix) {
        KStream<Long, Bid> bids = builder.stream(in.bids(), Consumed.with(Json.LONG, Json.BID));
        bids.mapValues(Model::q1, Named.as("q1-convert-price"))
                .to(prefix + "w1-q1", Produced.with(Json.LONG, Json.Q1));
        bids.filter((auction, bid) -> Model.q2Keeps(bid), Named.as("q2-filter"))
                .mapValues(Model::q2, Named.as("q2-project"))
                .to(prefix + "w1-q2", Produced.with(Json.LONG, Json.Q2));
    }

    /** W2: count per word (a repartition by word, then a logged key-value store); its updates. */
    static void w2(StreamsBuilder builder, Inputs in, String prefix) {
        builder.stream(in.words(), Consumed.with(Serdes.ByteArray(), Json.STRING))
                .groupBy((key, word) -> word, Grouped.with("words-by-word", Json.STRING, Json.STRING))
                .count(Named.as("word-count"),
                        Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("word-counts")
                                .withKeySerde(Json.STRING)
                                .withValueSerde(Serdes.Long()))
                .toStream(Named.as("word-count-updates"))
                .to(prefix + "w2", Produced.with(Json.STRING, Json.LONG));
    }

    /**
     * W3: q5, bids per auction per hopping window (the bids are keyed by auction already, so no
     * repartition); q7, the highest price per tumbling window over all bids (grouped under one
     * constant key, so a repartition into one partition). Event time is the bid's date_time.
     */
    static void w3(StreamsBuilder builder, Inputs in, String prefix) {
        KStream<Long, Bid> bids = builder.stream(
                in.bids(), Consumed.with(Json.LONG, Json.BID).withTimestampExtractor(new EventTimeExtractor()));

        bids.groupByKey(Grouped.with("q5-bids-by-auction", Json.LONG, Json.BID))
                .windowedBy(TimeWindows.ofSizeAndGrace(
                                Duration.ofMillis(Model.Q5_SIZE_MS), Duration.ofMillis(Model.GRACE_MS))
                        .advanceBy(Duration.ofMillis(Model.Q5_HOP_MS)))
                .count(Named.as("q5-count"),
                        Materialized.<Long, Long, WindowStore<Bytes, byte[]>>as("q5-bids-per-window")
                                .withKeySerde(Json.LONG)
                                .withValueSerde(Serdes.Long()))
                .toStream((window, count) -> new AuctionWindow(window.key(), window.window().start()),
                        Named.as("q5-updates"))
                .to(prefix + "w3-q5", Produced.with(Json.AUCTION_WINDOW, Json.LONG));

        final long allBids = 0L;
        bids.mapValues(Bid::price, Named.as("q7-price"))
                .groupBy((auction, price) -> allBids, Grouped.with("q7-all-bids", Serdes.Long(), Serdes.Long()))
                .windowedBy(TimeWindows.ofSizeAndGrace(
                        Duration.ofMillis(Model.Q7_SIZE_MS), Duration.ofMillis(Model.GRACE_MS)))
                .reduce(Math::max, Named.as("q7-max"),
                        Materialized.<Long, Long, WindowStore<Bytes, byte[]>>as("q7-max-price-per-window")
                                .withKeySerde(Serdes.Long())
                                .withValueSerde(Serdes.Long()))
                .toStream((window, max) -> window.window().start(), Named.as("q7-updates"))
                .to(prefix + "w3-q7", Produced.with(Json.LONG, Json.LONG));
    }

    /**
     * W4: q3, a KTable-KTable foreign-key join (auctions in category 10, by seller, to persons
     * in or/id/ca); q8, a KStream-KStream join of persons and auctions re-keyed by seller, event
     * times at most 10 s apart. One topic can be the source of one node only, so both queries
     * read the same two streams and q3 turns them into tables with toTable().
     */
    static void w4(StreamsBuilder builder, Inputs in, String prefix) {
        EventTimeExtractor eventTime = new EventTimeExtractor();
        KStream<Long, Person> persons = builder.stream(
                in.persons(), Consumed.with(Json.LONG, Json.PERSON).withTimestampExtractor(eventTime));
        KStream<Long, Auction> auctions = builder.stream(
                in.auctions(), Consumed.with(Json.LONG, Json.AUCTION).withTimestampExtractor(eventTime));

        KTable<Long, Person> personTable = persons.toTable(Named.as("q3-persons"),
                Materialized.<Long, Person, KeyValueStore<Bytes, byte[]>>as("q3-persons")
                        .withKeySerde(Json.LONG)
                        .withValueSerde(Json.PERSON));
        KTable<Long, Auction> auctionTable = auctions.toTable(Named.as("q3-auctions"),
                Materialized.<Long, Auction, KeyValueStore<Bytes, byte[]>>as("q3-auctions")
                        .withKeySerde(Json.LONG)
                        .withValueSerde(Json.AUCTION));
        auctionTable.filter((id, auction) -> Model.q3Auction(auction), Named.as("q3-category-10"))
                .join(personTable.filter((id, person) -> Model.q3Person(person), Named.as("q3-or-id-ca")),
                        Auction::seller,
                        Model::q3,
                        TableJoined.as("q3-auction-seller"))
                .toStream(Named.as("q3-updates"))
                .to(prefix + "w4-q3", Produced.with(Json.LONG, Json.Q3));

        KStream<Long, Auction> auctionsBySeller =
                auctions.selectKey((id, auction) -> auction.seller(), Named.as("q8-auctions-by-seller"));
        persons.join(auctionsBySeller,
                        Model::q8,
                        JoinWindows.ofTimeDifferenceAndGrace(
                                Duration.ofMillis(Model.Q8_WITHIN_MS), Duration.ofMillis(Model.GRACE_MS)),
                        StreamJoined.with(Json.LONG, Json.PERSON, Json.AUCTION)
                                .withName("q8-person-auction")
                                .withStoreName("q8-person-auction"))
                .to(prefix + "w4-q8", Produced.with(Json.LONG, Json.Q8));
    }
}
