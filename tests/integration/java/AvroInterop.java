import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.io.JsonEncoder;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.avro.message.MissingSchemaException;

/**
 * Apache Avro's own Java implementation, run by stocksync's interoperability tests as an integrator's code would
 * use it: single-object encoding with BinaryMessageEncoder and BinaryMessageDecoder.
 *
 *   java -cp 'libs/*' AvroInterop.java fingerprints FILE...       name and single-object fingerprint (hex) per schema
 *   java -cp 'libs/*' AvroInterop.java encode NAME FILE...        Avro JSON lines in, single-object bytes (hex) out
 *   java -cp 'libs/*' AvroInterop.java decode FILE...             single-object bytes (hex) in, name TAB Avro JSON out
 *
 * FILE... are the .avsc files, each after the files whose types it uses.
 */
public class AvroInterop {
    public static void main(String[] args) throws Exception {
        String mode = args[0];
        int first = mode.equals("encode") ? 2 : 1;
        Schema.Parser parser = new Schema.Parser();
        Map<String, Schema> schemas = new LinkedHashMap<>();
        for (int i = first; i < args.length; i++) {
            Schema schema = parser.parse(new File(args[i]));
            schemas.put(schema.getFullName(), schema);
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        HexFormat hex = HexFormat.of();
        switch (mode) {
            case "fingerprints" -> {
                for (Schema schema : schemas.values()) {
                    long fingerprint = SchemaNormalization.parsingFingerprint64(schema);
                    byte[] little = ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN)
                        .putLong(fingerprint).array();
                    System.out.println(schema.getFullName() + " " + hex.formatHex(little));
                }
            }
            case "encode" -> {
                Schema schema = schemas.get(args[1]);
                BinaryMessageEncoder<GenericRecord> encoder = new BinaryMessageEncoder<>(GenericData.get(), schema);
                GenericDatumReader<GenericRecord> reader = new GenericDatumReader<>(schema);
                for (String line = in.readLine(); line != null; line = in.readLine()) {
                    GenericRecord record = reader.read(null, DecoderFactory.get().jsonDecoder(schema, line));
                    System.out.println(hex.formatHex(encoder.encode(record).array()));
                }
            }
            case "decode" -> {
                List<BinaryMessageDecoder<GenericRecord>> decoders = new ArrayList<>();
                for (Schema schema : schemas.values()) {
                    decoders.add(new BinaryMessageDecoder<>(GenericData.get(), schema));
                }
                for (String line = in.readLine(); line != null; line = in.readLine()) {
                    System.out.println(decode(decoders, hex.parseHex(line.strip())));
                }
            }
            default -> throw new IllegalArgumentException("unknown mode " + mode);
        }
    }

    private static String decode(List<BinaryMessageDecoder<GenericRecord>> decoders, byte[] data) throws Exception {
        for (BinaryMessageDecoder<GenericRecord> decoder : decoders) {
            GenericRecord record;
            try {
                record = decoder.decode(data);
            } catch (MissingSchemaException notThisOne) {
                continue;
            }
            Schema schema = record.getSchema();
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            JsonEncoder json = EncoderFactory.get().jsonEncoder(schema, out);
            new GenericDatumWriter<GenericRecord>(schema).write(record, json);
            json.flush();
            return schema.getFullName() + "\t" + out.toString(StandardCharsets.UTF_8);
        }
        return "unknown\t" + HexFormat.of().formatHex(data, 0, Math.min(10, data.length));
    }
}
