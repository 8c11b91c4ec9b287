package faustus.bench.kstreams;

import faustus.bench.kstreams.Model.Auction;
import faustus.bench.kstreams.Model.Bid;
import faustus.bench.kstreams.Model.Person;
import java.util.List;
import java.util.Properties;
import java.util.Random;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * A small Nexmark-like input for checking the peer by hand (the benchmark's own input comes from
 * the harness's generator): {@code events} events in the proportions 1 person : 3 auctions : 46
 * bids, 20 ms apart from the contract's base time, and {@code words} log-uniformly drawn words
 * (a Zipf law of exponent 1) over {@code vocabulary} words. Keys as in the contract; keyed
 * records are partitioned by the Java client's murmur2 partitioner.
 *
 * <p>usage: SampleInput BROKERS EVENTS WORDS VOCABULARY [BIDS AUCTIONS PERSONS WORDS_TOPIC]
 */
public final class SampleInput {
    private static final long BASE_TIME_MS = 1_700_000_000_000L;
    private static final long STEP_MS = 20;
    private static final List<String> STATES = List.of("or", "id", "ca", "wa", "az", "ny");
    private static final List<String> CITIES = List.of("Portland", "Boise", "Phoenix", "Seattle", "Redding");

    private SampleInput() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 4 && args.length != 8) {
            System.err.println("usage: SampleInput BROKERS EVENTS WORDS VOCABULARY"
                    + " [BIDS AUCTIONS PERSONS WORDS_TOPIC]");
            System.exit(2);
        }
        String brokers = args[0];
        int events = Integer.parseInt(args[1]);
        int words = Integer.parseInt(args[2]);
        int vocabulary = Integer.parseInt(args[3]);
        String bids = args.length == 8 ? args[4] : "bench-bid";
        String auctions = args.length == 8 ? args[5] : "bench-auction";
        String persons = args.length == 8 ? args[6] : "bench-person";
        String wordTopic = args.length == 8 ? args[7] : "bench-words-" + vocabulary;

        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        Random random = new Random(42);
        long nextPerson = 1000;
        long nextAuction = 1000;
        try (KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer())) {
            for (int i = 0; i < events; i++) {
                long time = BASE_TIME_MS + i * STEP_MS;
                int slot = i % 50;
                if (slot == 0) {
                    long id = nextPerson++;
                    Person p = new Person(id, "person " + id, "p" + id + "@example.com", "4000 " + id,
                            CITIES.get(random.nextInt(CITIES.size())), STATES.get(random.nextInt(STATES.size())),
                            time, "");
                    send(producer, persons, Json.LONG.serializer().serialize(persons, id),
                            Json.PERSON.serializer().serialize(persons, p));
                } else if (slot <= 3) {
                    long id = nextAuction++;
                    long seller = nextPerson - 1 - random.nextInt((int) Math.min(3, nextPerson - 1000));
                    Auction a = new Auction(id, "item " + id, "", 100, 200, time, time + 60_000, seller,
                            10 + random.nextInt(5), "");
                    send(producer, auctions, Json.LONG.serializer().serialize(auctions, id),
                            Json.AUCTION.serializer().serialize(auctions, a));
                } else {
                    long auction = nextAuction == 1000 ? 1000 : nextAuction - 1 - random.nextInt(
                            (int) Math.min(20, nextAuction - 1000));
                    Bid b = new Bid(auction, 1000 + random.nextInt(50), 100 + random.nextInt(10_000),
                            "channel", "https://example.com/" + auction, time, "");
                    send(producer, bids, Json.LONG.serializer().serialize(bids, auction),
                            Json.BID.serializer().serialize(bids, b));
                }
            }
            double logV = Math.log(vocabulary + 1.0);
            for (int i = 0; i < words; i++) {
                int rank = Math.min(vocabulary, (int) Math.exp(random.nextDouble() * logV));
                rank = Math.max(rank, 1);
                send(producer, wordTopic, null, Json.STRING.serializer().serialize(wordTopic, "w" + rank));
            }
            producer.flush();
        }
        System.err.printf("wrote %d events to %s, %s, %s and %d words to %s%n",
                events, persons, auctions, bids, words, wordTopic);
    }

    private static void send(KafkaProducer<byte[], byte[]> producer, String topic, byte[] key, byte[] value) {
        producer.send(new ProducerRecord<>(topic, key, value), (metadata, e) -> {
            if (e != null) {
                System.err.println("cannot write to " + topic + ": " + e);
                System.exit(1);
            }
        });
    }
}
