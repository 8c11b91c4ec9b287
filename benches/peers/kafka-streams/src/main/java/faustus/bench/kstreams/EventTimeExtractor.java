package faustus.bench.kstreams;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.streams.errors.StreamsException;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * Event time of a Nexmark record: its {@code date_time}. Kafka Streams calls this after the
 * value is deserialized, so the record is already a {@link Model.Event}. A tombstone has no event
 * time of its own and takes the partition's current time.
 */
public final class EventTimeExtractor implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
        Object value = record.value();
        if (value instanceof Model.Event event) {
            return event.dateTime();
        }
        if (value == null) {
            return partitionTime;
        }
        throw new StreamsException("topic " + record.topic() + " partition " + record.partition()
                + " offset " + record.offset() + ": a " + value.getClass().getSimpleName()
                + " has no event time");
    }
}
