package faustus.bench.kstreams;

import com.fasterxml.jackson.annotation.JsonFormat;
import com.fasterxml.jackson.annotation.JsonPropertyOrder;
import java.util.Set;

/**
 * The records of the harness contract (benches/README.md, benches/harness/src/lib.rs): the three
 * Nexmark event types as they are on the input topics, and the query outputs. Components are
 * camelCase here and snake_case in JSON (see {@link Json}); all numbers are JSON integers.
 */
public final class Model {
    private Model() {}

    /** Size of a W3 q5 hopping window, in milliseconds. */
    public static final long Q5_SIZE_MS = 10_000;
    /** Advance of a W3 q5 hopping window, in milliseconds. */
    public static final long Q5_HOP_MS = 2_000;
    /** Size of a W3 q7 tumbling window, in milliseconds. */
    public static final long Q7_SIZE_MS = 10_000;
    /** The W4 q8 join window: a person and an auction join when their times differ by at most this. */
    public static final long Q8_WITHIN_MS = 10_000;
    /** Grace of every windowed operator: longer than any generated stream, so nothing is late. */
    public static final long GRACE_MS = 3_600_000;

    /** A Nexmark event: it carries its event time. */
    public sealed interface Event permits Person, Auction, Bid {
        /** Event time, ms since the Unix epoch. */
        long dateTime();
    }

    /** A Nexmark person (key on the input topic: the id). */
    public record Person(
            long id,
            String name,
            String emailAddress,
            String creditCard,
            String city,
            String state,
            long dateTime,
            String extra)
            implements Event {}

    /** A Nexmark auction (key on the input topic: the id). */
    public record Auction(
            long id,
            String itemName,
            String description,
            long initialBid,
            long reserve,
            long dateTime,
            long expires,
            long seller,
            long category,
            String extra)
            implements Event {}

    /** A Nexmark bid (key on the input topic: the auction id). */
    public record Bid(
            long auction, long bidder, long price, String channel, String url, long dateTime, String extra)
            implements Event {}

    /** W1 q1 output: the bid with its price converted, {@code price * 908 / 1000} in integers. */
    public record Q1(long auction, long bidder, long price, long dateTime) {}

    /** W1 q2 output: a bid on an auction whose id is a multiple of 123. */
    public record Q2(long auction, long price) {}

    /** W4 q3 output: an auction in category 10 whose seller lives in or, id or ca. */
    public record Q3(String name, String city, String state, long id) {}

    /** W4 q8 output: a person who opened an auction within {@link #Q8_WITHIN_MS} of appearing. */
    public record Q8(long id, String name, long auction) {}

    /** W3 q5 output key: an auction and the start of a hopping window, as a JSON array. */
    @JsonFormat(shape = JsonFormat.Shape.ARRAY)
    @JsonPropertyOrder({"auction", "windowStartMs"})
    public record AuctionWindow(long auction, long windowStartMs) {}

    /** The W1 q1 map. */
    public static Q1 q1(Bid bid) {
        return new Q1(bid.auction(), bid.bidder(), bid.price() * 908 / 1000, bid.dateTime());
    }

    /** The W1 q2 filter. */
    public static boolean q2Keeps(Bid bid) {
        return bid.auction() % 123 == 0;
    }

    /** The W1 q2 projection of a bid that passed {@link #q2Keeps}. */
    public static Q2 q2(Bid bid) {
        return new Q2(bid.auction(), bid.price());
    }

    /** The W4 q3 auction filter. */
    public static boolean q3Auction(Auction auction) {
        return auction.category() == 10;
    }

    private static final Set<String> Q3_STATES = Set.of("or", "id", "ca");

    /** The W4 q3 person filter. */
    public static boolean q3Person(Person person) {
        return Q3_STATES.contains(person.state());
    }

    /** The W4 q3 join result. */
    public static Q3 q3(Auction auction, Person seller) {
        return new Q3(seller.name(), seller.city(), seller.state(), auction.id());
    }

    /** The W4 q8 join result. */
    public static Q8 q8(Person person, Auction auction) {
        return new Q8(person.id(), person.name(), auction.id());
    }
}
