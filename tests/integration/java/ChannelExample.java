import java.io.File;
import java.nio.charset.StandardCharsets;
import java.util.Properties;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.generic.GenericRecordBuilder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * A channel written in Java with Kafka's and Avro's own libraries: the warehouse system reports a receipt.
 * The README shows it; the test suite runs it against a worker.
 *
 *   java -cp 'avro-libs/*:kafka-libs/*' ChannelExample.java BOOTSTRAP TOPIC_PREFIX SCHEMAS_DIR SKU EVENT_ID
 */
public class ChannelExample {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], prefix = args[1], schemas = args[2], sku = args[3], eventId = args[4];
        Schema movement = new Schema.Parser().parse(new File(schemas, "Movement.avsc"));
        GenericRecord receipt = new GenericRecordBuilder(movement)
            .set("kind", new GenericData.EnumSymbol(movement.getField("kind").schema(), "receipt"))
            .set("event_id", eventId)                        // unique per channel: a re-send changes nothing
            .set("sku", sku)
            .set("location", "w1")
            .set("quantity", 12L)
            .set("occurred_at", System.currentTimeMillis())
            .build();                                        // the other fields take their defaults
        byte[] value = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), movement).encode(receipt).array();

        Properties config = new Properties();
        config.put("bootstrap.servers", bootstrap);
        config.put("acks", "all");
        config.put("enable.idempotence", "true");             // Java's default partitioner is murmur2, as required
        try (KafkaProducer<byte[], byte[]> producer =
                 new KafkaProducer<>(config, new ByteArraySerializer(), new ByteArraySerializer())) {
            String topic = prefix + ".channel.wms.restock";  // the channel is the topic, never a payload field
            producer.send(new ProducerRecord<>(topic, sku.getBytes(StandardCharsets.UTF_8), value)).get();
        }
    }
}
