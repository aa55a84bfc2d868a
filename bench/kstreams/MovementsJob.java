import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of bench.compare's plain loop and stocksync worker, on the same input topics: each
 * movement (Avro single-object Movement or MovementBatch) updates on_hand per SKU and location in a RocksDB store
 * with its changelog, and emits one Avro PositionState change event. One stream thread, the given processing
 * guarantee. Prints "first EPOCH_MS" when the first record is processed; runs until it is stopped.
 *
 * With EXTRA and PAD (the fair yardstick: the same volume as a stocksync worker wrote), each movement also writes
 * EXTRA more records on average (a fraction carried to the next movement) of PAD value bytes each.
 *
 *   java -cp 'libs/*' MovementsJob.java BOOTSTRAP APP_ID STATE_DIR GUARANTEE OUTPUT_TOPIC SCHEMAS_DIR TOPIC,TOPIC...
 *        [EXTRA PAD]
 */
public class MovementsJob {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], appId = args[1], stateDir = args[2], guarantee = args[3], output = args[4];
        File schemas = new File(args[5]);
        List<String> inputs = Arrays.asList(args[6].split(","));
        double extra = args.length > 7 ? Double.parseDouble(args[7]) : 0.0;
        int pad = args.length > 8 ? Integer.parseInt(args[8]) : 0;
        Schema.Parser parser = new Schema.Parser();  // in order: each file after those whose types it uses
        Schema movement = parser.parse(new File(schemas, "Movement.avsc"));
        Schema batch = parser.parse(new File(schemas, "MovementBatch.avsc"));
        parser.parse(new File(schemas, "PositionFigures.avsc"));
        Schema position = parser.parse(new File(schemas, "PositionState.avsc"));

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        // exactly_once_v2's default; at_least_once's (30 s) would hide for up to 30 s that the input is all read
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");

        StreamsBuilder builder = new StreamsBuilder();
        builder.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore("on-hand"),
                                                          Serdes.String(), Serdes.Long()));
        builder.stream(inputs, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
               .process(() -> new Apply(movement, batch, position, extra, pad), "on-hand")
               .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close();
            stopped.countDown();
        }));
        streams.start();
        stopped.await();
    }

    static final class Apply implements Processor<byte[], byte[], byte[], byte[]> {
        private final Schema position, figures;
        private final long movementPrint, batchPrint;
        private final GenericDatumReader<GenericRecord> movementReader, batchReader;
        private final BinaryMessageEncoder<GenericRecord> encoder;
        private ProcessorContext<byte[], byte[]> context;
        private KeyValueStore<String, Long> onHand;
        private long version;
        private boolean started;
        private final double extra;
        private final byte[] padding;
        private double owed;

        Apply(Schema movement, Schema batch, Schema position, double extra, int pad) {
            this.extra = extra;
            this.padding = new byte[pad];
            this.position = position;
            this.figures = position.getField("figures").schema();
            this.movementPrint = SchemaNormalization.parsingFingerprint64(movement);
            this.batchPrint = SchemaNormalization.parsingFingerprint64(batch);
            this.movementReader = new GenericDatumReader<>(movement);
            this.batchReader = new GenericDatumReader<>(batch);
            this.encoder = new BinaryMessageEncoder<>(GenericData.get(), position);
        }

        @Override
        public void init(ProcessorContext<byte[], byte[]> context) {
            this.context = context;
            this.onHand = context.getStateStore("on-hand");
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            if (!started) {
                started = true;
                System.out.println("first " + System.currentTimeMillis());
                System.out.flush();
            }
            byte[] value = record.value();
            if (value == null || value.length < 10 || value[0] != (byte) 0xC3 || value[1] != 0x01) {
                return;
            }
            long print = ByteBuffer.wrap(value, 2, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
            try {
                var decoder = DecoderFactory.get().binaryDecoder(value, 10, value.length - 10, null);
                if (print == movementPrint) {
                    apply(movementReader.read(null, decoder), record.timestamp());
                } else if (print == batchPrint) {
                    for (Object one : (List<?>) batchReader.read(null, decoder).get("movements")) {
                        apply((GenericRecord) one, record.timestamp());
                    }
                }
            } catch (java.io.IOException e) {
                throw new RuntimeException(e);
            }
        }

        private void apply(GenericRecord m, long timestamp) throws java.io.IOException {
            String sku = m.get("sku").toString();
            Object at = m.get("location");
            String location = at == null ? "" : at.toString();
            String kind = m.get("kind").toString();
            long quantity = (Long) m.get("quantity");
            String key = sku + "|" + location;
            Long found = onHand.get(key);
            long units = found == null ? 0 : found;
            switch (kind) {
                case "sale" -> units -= quantity;
                case "receipt", "return", "adjustment" -> units += quantity;
                case "count" -> units = quantity;
                default -> { }
            }
            onHand.put(key, units);
            GenericRecord figure = new GenericData.Record(figures);
            figure.put("on_hand", units);
            figure.put("reserved", 0L);
            figure.put("safety_stock", 0L);
            figure.put("in_transit", 0L);
            figure.put("available", units);
            GenericRecord state = new GenericData.Record(position);
            state.put("sku", sku);
            state.put("location", location);
            state.put("figures", figure);
            state.put("version", version++);
            state.put("updated_at", (Long) m.get("occurred_at"));
            ByteBuffer encoded = encoder.encode(state);
            byte[] out = new byte[encoded.remaining()];
            encoded.get(out);
            context.forward(new Record<>(key.getBytes(), out, timestamp));
            owed += extra;
            while (owed >= 1.0) {
                context.forward(new Record<>(key.getBytes(), padding, timestamp));
                owed -= 1.0;
            }
        }
    }
}
