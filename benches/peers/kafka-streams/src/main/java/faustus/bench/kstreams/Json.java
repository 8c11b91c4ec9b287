package faustus.bench.kstreams;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import com.fasterxml.jackson.databind.ObjectWriter;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import java.io.IOException;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/**
 * JSON serdes (Jackson) for the records of {@link Model} and for JSON numbers and strings used as
 * keys. Decoding is strict: unknown or missing fields, and nulls for numbers, are errors. A Kafka
 * null (a tombstone) stays null both ways.
 */
public final class Json {
    private Json() {}

    static final ObjectMapper MAPPER = new ObjectMapper()
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
            .enable(DeserializationFeature.FAIL_ON_NULL_CREATOR_PROPERTIES)
            .enable(DeserializationFeature.FAIL_ON_MISSING_CREATOR_PROPERTIES);

    public static final Serde<Long> LONG = serde(Long.class);
    public static final Serde<String> STRING = serde(String.class);
    public static final Serde<Model.Person> PERSON = serde(Model.Person.class);
    public static final Serde<Model.Auction> AUCTION = serde(Model.Auction.class);
    public static final Serde<Model.Bid> BID = serde(Model.Bid.class);
    public static final Serde<Model.Q1> Q1 = serde(Model.Q1.class);
    public static final Serde<Model.Q2> Q2 = serde(Model.Q2.class);
    public static final Serde<Model.Q3> Q3 = serde(Model.Q3.class);
    public static final Serde<Model.Q8> Q8 = serde(Model.Q8.class);
    public static final Serde<Model.AuctionWindow> AUCTION_WINDOW = serde(Model.AuctionWindow.class);

    /** A serde writing and reading {@code type} as JSON. */
    public static <T> Serde<T> serde(Class<T> type) {
        ObjectWriter writer = MAPPER.writerFor(type);
        ObjectReader reader = MAPPER.readerFor(type);
        Serializer<T> serializer = (topic, value) -> {
            if (value == null) {
                return null;
            }
            try {
                return writer.writeValueAsBytes(value);
            } catch (JsonProcessingException e) {
                throw new SerializationException(
                        "cannot write a " + type.getSimpleName() + " as JSON for topic " + topic, e);
            }
        };
        Deserializer<T> deserializer = (topic, bytes) -> {
            if (bytes == null) {
                return null;
            }
            try {
                return reader.readValue(bytes);
            } catch (IOException e) {
                throw new SerializationException(
                        "topic " + topic + ": not a JSON " + type.getSimpleName() + ": "
                                + (e instanceof JsonProcessingException j ? j.getOriginalMessage() : e.getMessage()),
                        e);
            }
        };
        return Serdes.serdeFrom(serializer, deserializer);
    }
}
