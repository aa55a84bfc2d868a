import java.io.ByteArrayOutputStream;
import java.io.File;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.generic.GenericRecordBuilder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * A channel written in Java for a deployment with a Schema Registry, framing its record as Confluent's serializers
 * do (a zero byte, the schema's id, the Avro body) with Apache Avro and the JDK only. The channel guide shows it;
 * the test suite runs it against a worker.
 *
 *   java -cp 'avro-libs/*:kafka-libs/*' RegistryChannelExample.java BOOTSTRAP TOPIC_PREFIX SCHEMAS_DIR REGISTRY SKU EVENT_ID
 */
public class RegistryChannelExample {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], prefix = args[1], schemas = args[2], registry = args[3];
        String sku = args[4], eventId = args[5];
        Schema movement = new Schema.Parser().parse(new File(schemas, "Movement.avsc"));

        // The schema's id: looked up under its subject, the record's full name (stocksync registered it).
        String lookup = "{\"schema\": \"" + movement.toString().replace("\\", "\\\\").replace("\"", "\\\"") + "\"}";
        HttpResponse<String> found = HttpClient.newHttpClient().send(
            HttpRequest.newBuilder(URI.create(registry + "/subjects/" + movement.getFullName()))
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .POST(HttpRequest.BodyPublishers.ofString(lookup)).build(),
            HttpResponse.BodyHandlers.ofString());
        Matcher id = Pattern.compile("\"id\"\\s*:\\s*(\\d+)").matcher(found.body());
        if (found.statusCode() != 200 || !id.find()) {
            throw new IllegalStateException("schema registry: " + found.statusCode() + " " + found.body());
        }

        GenericRecord receipt = new GenericRecordBuilder(movement)
            .set("kind", new GenericData.EnumSymbol(movement.getField("kind").schema(), "receipt"))
            .set("event_id", eventId)
            .set("sku", sku)
            .set("location", "w1")
            .set("quantity", 12L)
            .set("occurred_at", System.currentTimeMillis())
            .build();
        ByteArrayOutputStream value = new ByteArrayOutputStream();
        value.write(0);                                                          // magic byte
        value.write(ByteBuffer.allocate(4).putInt(Integer.parseInt(id.group(1))).array());  // schema id, big endian
        BinaryEncoder body = EncoderFactory.get().binaryEncoder(value, null);
        new GenericDatumWriter<GenericRecord>(movement).write(receipt, body);
        body.flush();

        Properties config = new Properties();
        config.put("bootstrap.servers", bootstrap);
        config.put("acks", "all");
        config.put("enable.idempotence", "true");
        try (KafkaProducer<byte[], byte[]> producer =
                 new KafkaProducer<>(config, new ByteArraySerializer(), new ByteArraySerializer())) {
            String topic = prefix + ".channel.wms.restock";
            producer.send(new ProducerRecord<>(topic, sku.getBytes(StandardCharsets.UTF_8), value.toByteArray())).get();
        }
    }
}
