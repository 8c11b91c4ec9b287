package faustus.bench.kstreams;

import faustus.bench.kstreams.Options.Guarantee;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs one workload of the harness contract with Kafka Streams until SIGTERM.
 *
 * <p>Exit codes: 0 after a clean stop, 1 when the application fails (a missing topic, an
 * unreachable broker, a processing error), 2 for a bad command line.
 */
public final class Main {
    private static final Logger LOG = LoggerFactory.getLogger(Main.class);

    /** Commit interval of every system in the harness, in milliseconds. */
    static final long COMMIT_INTERVAL_MS = 100;
    /** How long a stop may take; the harness sends SIGKILL 10 s after SIGTERM. */
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(8);
    /**
     * A stop leaves the consumer group (Kafka Streams does not by default), so that a restart
     * with the same application id, e.g. to time a restore, need not wait for the old members'
     * session timeout before it is assigned its tasks.
     */
    private static final CloseOptions CLOSE = CloseOptions.timeout(CLOSE_TIMEOUT)
            .withGroupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP);
    private static final Duration ADMIN_TIMEOUT = Duration.ofSeconds(30);
    private static final String GLOBAL_PROCESSING_EXCEPTIONS = "processing.exception.handler.global.enabled";

    private Main() {}

    /** The run cannot start for a reason the message explains fully. */
    static final class StartupException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        StartupException(String message) {
            super(message);
        }
    }

    public static void main(String[] args) {
        if (List.of(args).contains("--help") || List.of(args).contains("-h")) {
            System.out.println(Options.USAGE);
            return;
        }
        Options options;
        try {
            options = Options.parse(args);
        } catch (Options.UsageException e) {
            System.err.println("kafka-streams-bench: error: " + e.getMessage());
            System.err.println(Options.USAGE);
            System.exit(2);
            return;
        }
        try {
            System.exit(run(options));
        } catch (StartupException e) {
            LOG.error("{}", e.getMessage());
            System.exit(1);
        } catch (RuntimeException e) {
            LOG.error("{}", e.getMessage(), e);
            System.exit(1);
        }
    }

    /** The Kafka Streams configuration of a run. */
    static Properties config(Options options, Path stateDir) {
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, options.appId());
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, options.brokers());
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, switch (options.guarantee()) {
            case AT_LEAST_ONCE -> StreamsConfig.AT_LEAST_ONCE;
            case EXACTLY_ONCE -> StreamsConfig.EXACTLY_ONCE_V2;
        });
        // KSTREAMS_SETTINGS=defaults: Kafka Streams' own defaults for the commit interval and
        // the producer's linger and batch size (30 s / 100 ms under at_least_once, 100 ms under
        // exactly_once; linger.ms 100; batch.size 16384) instead of the contract's.
        boolean matched = !"defaults".equals(System.getenv("KSTREAMS_SETTINGS"));
        if (matched) {
            props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, COMMIT_INTERVAL_MS);
        }
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 2);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        // No global tables here; set only so that Kafka Streams does not warn about its future
        // default (the constant for this name is already deprecated, so the name is spelled out).
        // The partition assignor re-reads the Streams settings from the main consumer's, so the
        // consumer gets it too.
        props.put(GLOBAL_PROCESSING_EXCEPTIONS, true);
        props.put(StreamsConfig.mainConsumerPrefix(GLOBAL_PROCESSING_EXCEPTIONS), true);
        // The harness's common client settings.
        props.put(StreamsConfig.producerPrefix(ProducerConfig.ACKS_CONFIG), "all");
        if (matched) {
            props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 5);
            props.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), 262_144);
        }
        props.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "none");
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        if (options.guarantee() == Guarantee.EXACTLY_ONCE) {
            // exactly_once_v2 sets this itself; spelled out because the contract names it.
            props.put(StreamsConfig.consumerPrefix(ConsumerConfig.ISOLATION_LEVEL_CONFIG), "read_committed");
        }
        return props;
    }

    private static int run(Options options) {
        List<String> inputs = Workloads.inputs(options.workload(), options.inputs());
        List<String> outputs = Workloads.outputs(options.workload(), options.outputPrefix());
        requireTopics(options.brokers(), inputs, outputs);

        Path stateDir = Path.of(System.getProperty("java.io.tmpdir"), "faustus-bench-kafka-streams", options.appId());
        deleteRecursively(stateDir);

        Properties config = config(options, stateDir);
        Topology topology = Workloads.build(options.workload(), options.inputs(), options.outputPrefix(), config);
        LOG.info("{} {} as application {}: {} -> {}",
                options.workload(), options.guarantee().flag, options.appId(), inputs, outputs);
        LOG.debug("topology:\n{}", topology.describe());

        KafkaStreams streams = new KafkaStreams(topology, config);
        CountDownLatch failed = new CountDownLatch(1);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        streams.setUncaughtExceptionHandler(e -> {
            failure.compareAndSet(null, e);
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setGlobalStateRestoreListener(new RestoreLog());
        streams.setStateListener((now, before) -> {
            LOG.info("state {} -> {}", before, now);
            if (now == KafkaStreams.State.ERROR) {
                failed.countDown();
            }
        });
        Thread hook = new Thread(() -> {
            LOG.info("stopping");
            boolean closed = streams.close(CLOSE);
            if (!closed) {
                LOG.warn("Kafka Streams did not close within {}", CLOSE_TIMEOUT);
            }
            // A stop by signal that closed cleanly is a success (otherwise the JVM would exit 143).
            Runtime.getRuntime().halt(closed && failure.get() == null ? 0 : 1);
        }, "shutdown");
        Runtime.getRuntime().addShutdownHook(hook);

        streams.start();
        awaitUninterruptibly(failed);

        // Only an error gets here: on SIGTERM the JVM ends once the hook has closed Kafka Streams.
        Throwable cause = failure.get();
        LOG.error("Kafka Streams failed: {}", cause == null ? "state ERROR" : cause.getMessage(), cause);
        try {
            Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException alreadyStopping) {
            return 1;
        }
        streams.close(CLOSE);
        return 1;
    }

    /** Logs each state store partition restored from its changelog, and how long that took. */
    private static final class RestoreLog implements StateRestoreListener {
        private final Map<TopicPartition, Long> started = new ConcurrentHashMap<>();

        @Override
        public void onRestoreStart(TopicPartition partition, String store, long startOffset, long endOffset) {
            started.put(partition, System.nanoTime());
            LOG.info("restoring {} from {} offsets {}..{}", store, partition, startOffset, endOffset);
        }

        @Override
        public void onBatchRestored(TopicPartition partition, String store, long batchEndOffset, long numRestored) {}

        @Override
        public void onRestoreEnd(TopicPartition partition, String store, long totalRestored) {
            Long start = started.remove(partition);
            LOG.info("restored {} from {}: {} records in {} ms", store, partition, totalRestored,
                    start == null ? "?" : (System.nanoTime() - start) / 1_000_000);
        }
    }

    /** Fails with a clear message when a topic the run needs is missing (auto-creation is off). */
    private static void requireTopics(String brokers, List<String> inputs, List<String> outputs) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) ADMIN_TIMEOUT.toMillis());
        Set<String> existing;
        try (Admin admin = Admin.create(props)) {
            existing = admin.listTopics().names().get(ADMIN_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            throw new StartupException("cannot list the topics of " + brokers + ": " + e.getCause().getMessage());
        } catch (TimeoutException e) {
            throw new StartupException("cannot list the topics of " + brokers + " within " + ADMIN_TIMEOUT);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new StartupException("interrupted while listing the topics of " + brokers);
        }
        List<String> missing = new ArrayList<>();
        for (String topic : inputs) {
            if (!existing.contains(topic)) {
                missing.add("input topic " + topic);
            }
        }
        for (String topic : outputs) {
            if (!existing.contains(topic)) {
                missing.add("output topic " + topic);
            }
        }
        if (!missing.isEmpty()) {
            throw new StartupException("missing on " + brokers + " (create them first; automatic topic"
                    + " creation is not relied on): " + String.join(", ", missing));
        }
    }

    private static void deleteRecursively(Path dir) {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(dir)) {
            for (Path path : paths.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(path);
            }
        } catch (IOException e) {
            throw new StartupException("cannot clear the state directory " + dir + ": " + e);
        }
    }

    private static void awaitUninterruptibly(CountDownLatch latch) {
        boolean interrupted = false;
        while (true) {
            try {
                latch.await();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }
}
