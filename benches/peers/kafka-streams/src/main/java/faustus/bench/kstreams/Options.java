package faustus.bench.kstreams;

import faustus.bench.kstreams.Workloads.Inputs;
import faustus.bench.kstreams.Workloads.Workload;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;

/** The command line of the harness contract (benches/README.md, "How a system is started"). */
public record Options(
        Workload workload, Guarantee guarantee, String brokers, String appId, String outputPrefix, Inputs inputs) {

    /** A processing guarantee, as the harness names it. */
    public enum Guarantee {
        AT_LEAST_ONCE("at_least_once"),
        EXACTLY_ONCE("exactly_once");

        final String flag;

        Guarantee(String flag) {
            this.flag = flag;
        }
    }

    /** A bad command line; the message says what is wrong. */
    public static final class UsageException extends Exception {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }

    public static final String USAGE = """
            usage: run --workload W0|W1|W2|W3|W4 --guarantee at_least_once|exactly_once
                       --brokers HOST:PORT[,HOST:PORT...] --app-id ID --output-prefix P
                       [--bids T] [--auctions T] [--persons T] [--words T]
            defaults: --bids bench-bid --auctions bench-auction --persons bench-person
                      --words bench-words-100000""";

    private static final List<String> REQUIRED = List.of("workload", "guarantee", "brokers", "app-id", "output-prefix");
    private static final Map<String, String> DEFAULTS = Map.of(
            "bids", "bench-bid",
            "auctions", "bench-auction",
            "persons", "bench-person",
            "words", "bench-words-100000");
    /** Kafka's rule for topic names (and so for application ids, which prefix internal topics). */
    private static final Pattern TOPIC_CHARS = Pattern.compile("[a-zA-Z0-9._-]+");

    /** Parses {@code --flag value} and {@code --flag=value} arguments. */
    public static Options parse(String[] args) throws UsageException {
        Map<String, String> given = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (!arg.startsWith("--") || arg.length() == 2) {
                throw new UsageException("unexpected argument '" + arg + "'");
            }
            String name = arg.substring(2);
            String value;
            int eq = name.indexOf('=');
            if (eq >= 0) {
                value = name.substring(eq + 1);
                name = name.substring(0, eq);
            } else {
                if (i + 1 >= args.length) {
                    throw new UsageException("--" + name + " needs a value");
                }
                value = args[++i];
            }
            if (!REQUIRED.contains(name) && !DEFAULTS.containsKey(name)) {
                throw new UsageException("unknown flag --" + name);
            }
            if (given.put(name, value) != null) {
                throw new UsageException("--" + name + " given twice");
            }
        }
        Workload workload = given.containsKey("workload")
                ? parseEnum(Workload.class, given.get("workload"), "--workload", "W0, W1, W2, W3 or W4")
                : null;
        Guarantee guarantee = given.containsKey("guarantee") ? parseGuarantee(given.get("guarantee")) : null;
        for (String name : REQUIRED) {
            if (!given.containsKey(name)) {
                throw new UsageException("missing --" + name);
            }
        }
        String brokers = given.get("brokers");
        if (brokers.isBlank()) {
            throw new UsageException("--brokers is empty");
        }
        String appId = name(given, "app-id", false);
        String prefix = name(given, "output-prefix", true);
        Inputs inputs = new Inputs(
                topic(given, "bids"), topic(given, "auctions"), topic(given, "persons"), topic(given, "words"));
        return new Options(workload, guarantee, brokers, appId, prefix, inputs);
    }

    private static Guarantee parseGuarantee(String value) throws UsageException {
        for (Guarantee guarantee : Guarantee.values()) {
            if (guarantee.flag.equals(value)) {
                return guarantee;
            }
        }
        throw new UsageException("--guarantee must be at_least_once or exactly_once, not '" + value + "'");
    }

    private static String topic(Map<String, String> given, String flag) throws UsageException {
        given.putIfAbsent(flag, DEFAULTS.get(flag));
        return name(given, flag, false);
    }

    private static String name(Map<String, String> given, String flag, boolean mayBeEmpty) throws UsageException {
        String value = given.get(flag);
        if (mayBeEmpty && value.isEmpty()) {
            return value;
        }
        if (!TOPIC_CHARS.matcher(value).matches() || value.length() > 200) {
            throw new UsageException("--" + flag + " '" + value
                    + "' is not a valid Kafka name (1 to 200 of a-z A-Z 0-9 . _ -)");
        }
        return value;
    }

    private static <E extends Enum<E>> E parseEnum(Class<E> type, String value, String flag, String expected)
            throws UsageException {
        try {
            return Enum.valueOf(type, value.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new UsageException(flag + " must be " + expected + ", not '" + value + "'");
        }
    }
}
