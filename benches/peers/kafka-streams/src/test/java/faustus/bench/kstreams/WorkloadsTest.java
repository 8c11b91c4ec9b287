package faustus.bench.kstreams;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import faustus.bench.kstreams.Model.Auction;
import faustus.bench.kstreams.Model.AuctionWindow;
import faustus.bench.kstreams.Model.Bid;
import faustus.bench.kstreams.Model.Person;
import faustus.bench.kstreams.Model.Q3;
import faustus.bench.kstreams.Model.Q8;
import faustus.bench.kstreams.Workloads.Inputs;
import faustus.bench.kstreams.Workloads.Workload;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class WorkloadsTest {
    private static final long T0 = 1_700_000_000_000L;
    private static final Inputs IN = new Inputs("bids", "auctions", "persons", "words");
    private static final String P = "out-";

    @TempDir
    Path stateDir;

    private TopologyTestDriver driver(Workload workload) {
        Options options = new Options(workload, Options.Guarantee.AT_LEAST_ONCE, "localhost:9", "test-" + workload, P, IN);
        Properties props = Main.config(options, stateDir);
        // Every update, as the checker reads them (the record cache only merges updates).
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        return new TopologyTestDriver(Workloads.build(workload, IN, P, props), props);
    }

    private static Bid bid(long auction, long price, long time) {
        return new Bid(auction, 7, price, "c", "u", time, "");
    }

    private static <K, V> Map<K, V> table(TestOutputTopic<K, V> topic) {
        Map<K, V> table = new HashMap<>();
        for (KeyValue<K, V> kv : topic.readKeyValuesToList()) {
            if (kv.value == null) {
                table.remove(kv.key);
            } else {
                table.put(kv.key, kv.value);
            }
        }
        return table;
    }

    @Test
    void jsonShapesFollowTheContract() {
        Bid bid = bid(5, 1234, T0);
        String json = new String(Json.BID.serializer().serialize("t", bid), StandardCharsets.UTF_8);
        assertEquals("{\"auction\":5,\"bidder\":7,\"price\":1234,\"channel\":\"c\",\"url\":\"u\","
                + "\"date_time\":1700000000000,\"extra\":\"\"}", json);
        assertEquals("[5,1700000000000]", new String(
                Json.AUCTION_WINDOW.serializer().serialize("t", new AuctionWindow(5, T0)), StandardCharsets.UTF_8));
        assertEquals("\"w12\"", new String(Json.STRING.serializer().serialize("t", "w12"), StandardCharsets.UTF_8));
        Person person = Json.PERSON.deserializer().deserialize("t", ("{\"id\":1001,\"name\":\"n\",\"email_address\":"
                + "\"e\",\"credit_card\":\"c\",\"city\":\"x\",\"state\":\"or\",\"date_time\":5,\"extra\":\"\"}")
                .getBytes(StandardCharsets.UTF_8));
        assertEquals(new Person(1001, "n", "e", "c", "x", "or", 5, ""), person);
        assertThrows(RuntimeException.class, () -> Json.BID.deserializer().deserialize("t",
                "{\"auction\":5}".getBytes(StandardCharsets.UTF_8)));
    }

    @Test
    void w0PassesBidsThrough() {
        try (TopologyTestDriver d = driver(Workload.W0)) {
            TestInputTopic<byte[], Bid> in = d.createInputTopic("bids", Serdes.ByteArray().serializer(), Json.BID.serializer());
            TestOutputTopic<byte[], Bid> out =
                    d.createOutputTopic(P + "w0", Serdes.ByteArray().deserializer(), Json.BID.deserializer());
            in.pipeInput("5".getBytes(StandardCharsets.UTF_8), bid(5, 10, T0));
            KeyValue<byte[], Bid> kv = out.readKeyValue();
            assertEquals("5", new String(kv.key, StandardCharsets.UTF_8));
            assertEquals(bid(5, 10, T0), kv.value);
        }
    }

    @Test
    void w1MapsAndFilters() {
        try (TopologyTestDriver d = driver(Workload.W1)) {
            TestInputTopic<Long, Bid> in = d.createInputTopic("bids", Json.LONG.serializer(), Json.BID.serializer());
            in.pipeInput(246L, bid(246, 1999, T0));
            in.pipeInput(5L, bid(5, 1000, T0 + 1));
            assertEquals(List.of(KeyValue.pair(246L, new Model.Q1(246, 7, 1815, T0)),
                            KeyValue.pair(5L, new Model.Q1(5, 7, 908, T0 + 1))),
                    d.createOutputTopic(P + "w1-q1", Json.LONG.deserializer(), Json.Q1.deserializer())
                            .readKeyValuesToList());
            assertEquals(List.of(KeyValue.pair(246L, new Model.Q2(246, 1999))),
                    d.createOutputTopic(P + "w1-q2", Json.LONG.deserializer(), Json.Q2.deserializer())
                            .readKeyValuesToList());
        }
    }

    @Test
    void w2CountsWords() {
        try (TopologyTestDriver d = driver(Workload.W2)) {
            TestInputTopic<byte[], String> in =
                    d.createInputTopic("words", Serdes.ByteArray().serializer(), Json.STRING.serializer());
            for (String w : List.of("w1", "w2", "w1", "w3", "w1")) {
                in.pipeInput(null, w);
            }
            TestOutputTopic<String, Long> out =
                    d.createOutputTopic(P + "w2", Json.STRING.deserializer(), Json.LONG.deserializer());
            assertEquals(Map.of("w1", 3L, "w2", 1L, "w3", 1L), table(out));
        }
    }

    @Test
    void w3CountsHoppingWindowsAndTumblingMaxima() {
        try (TopologyTestDriver d = driver(Workload.W3)) {
            TestInputTopic<Long, Bid> in = d.createInputTopic("bids", Json.LONG.serializer(), Json.BID.serializer());
            // Record timestamps are deliberately unrelated: event time is date_time.
            Instant wall = Instant.parse("2030-01-01T00:00:00Z");
            in.pipeInput(1L, bid(1, 50, T0 + 500), wall);
            in.pipeInput(1L, bid(1, 70, T0 + 3_000), wall);
            in.pipeInput(2L, bid(2, 60, T0 + 11_000), wall);
            in.pipeInput(1L, bid(1, 10, T0 + 1_000), wall); // out of order, within grace

            Map<AuctionWindow, Long> q5 = table(d.createOutputTopic(
                    P + "w3-q5", Json.AUCTION_WINDOW.deserializer(), Json.LONG.deserializer()));
            Map<AuctionWindow, Long> expected = new HashMap<>();
            long[][] bids = {{1, T0 + 500}, {1, T0 + 3_000}, {2, T0 + 11_000}, {1, T0 + 1_000}};
            for (long[] b : bids) {
                for (long start = b[1] - b[1] % Model.Q5_HOP_MS; start > b[1] - Model.Q5_SIZE_MS; start -= Model.Q5_HOP_MS) {
                    expected.merge(new AuctionWindow(b[0], start), 1L, Long::sum);
                }
            }
            assertEquals(expected, q5);

            Map<Long, Long> q7 = table(d.createOutputTopic(P + "w3-q7", Json.LONG.deserializer(), Json.LONG.deserializer()));
            assertEquals(Map.of(T0, 70L, T0 + 10_000, 60L), q7);
        }
    }

    @Test
    void w4JoinsTablesByForeignKeyAndStreamsInAWindow() {
        try (TopologyTestDriver d = driver(Workload.W4)) {
            TestInputTopic<Long, Person> persons =
                    d.createInputTopic("persons", Json.LONG.serializer(), Json.PERSON.serializer());
            TestInputTopic<Long, Auction> auctions =
                    d.createInputTopic("auctions", Json.LONG.serializer(), Json.AUCTION.serializer());
            persons.pipeInput(1L, new Person(1, "ann", "e", "c", "Boise", "id", T0, ""));
            persons.pipeInput(2L, new Person(2, "bob", "e", "c", "Seattle", "wa", T0, ""));
            auctions.pipeInput(10L, auction(10, 1, 10, T0 + 5_000));
            auctions.pipeInput(11L, auction(11, 2, 10, T0 + 6_000));
            auctions.pipeInput(12L, auction(12, 1, 11, T0 + 7_000));
            auctions.pipeInput(13L, auction(13, 1, 10, T0 + 10_001));
            auctions.pipeInput(14L, auction(14, 3, 10, T0 + 8_000)); // no such person yet
            persons.pipeInput(3L, new Person(3, "cy", "e", "c", "Redding", "ca", T0 + 30_000, ""));

            assertEquals(Map.of(10L, new Q3("ann", "Boise", "id", 10), 13L, new Q3("ann", "Boise", "id", 13),
                            14L, new Q3("cy", "Redding", "ca", 14)),
                    table(d.createOutputTopic(P + "w4-q3", Json.LONG.deserializer(), Json.Q3.deserializer())));

            assertEquals(List.of(KeyValue.pair(1L, new Q8(1, "ann", 10)), KeyValue.pair(2L, new Q8(2, "bob", 11)),
                            KeyValue.pair(1L, new Q8(1, "ann", 12))),
                    d.createOutputTopic(P + "w4-q8", Json.LONG.deserializer(), Json.Q8.deserializer())
                            .readKeyValuesToList());
        }
    }

    private static Auction auction(long id, long seller, long category, long time) {
        return new Auction(id, "item", "d", 1, 2, time, time + 100_000, seller, category, "");
    }

    @Test
    void badCommandLinesAreRejected() {
        assertThrows(Options.UsageException.class, () -> Options.parse(new String[] {"--workload", "W9"}));
        assertThrows(Options.UsageException.class, () -> Options.parse(new String[] {
            "--workload", "W1", "--guarantee", "twice", "--brokers", "b:1", "--app-id", "a", "--output-prefix", "p"}));
        assertThrows(Options.UsageException.class, () -> Options.parse(new String[] {
            "--workload", "W1", "--guarantee", "exactly_once", "--brokers", "b:1", "--app-id", "a"}));
        assertThrows(Options.UsageException.class, () -> Options.parse(new String[] {
            "--workload", "W1", "--guarantee", "exactly_once", "--brokers", "b:1", "--app-id", "a",
            "--output-prefix", "p", "--colour", "red"}));
        Options ok = assertDoesNotThrowParse("--workload=W2", "--guarantee", "exactly_once", "--brokers", "b:1",
                "--app-id", "a", "--output-prefix", "out-x-");
        assertEquals(new Inputs("bench-bid", "bench-auction", "bench-person", "bench-words-100000"), ok.inputs());
        assertEquals(Workload.W2, ok.workload());
    }

    private static Options assertDoesNotThrowParse(String... args) {
        try {
            return Options.parse(args);
        } catch (Options.UsageException e) {
            throw new AssertionError(e);
        }
    }
}
