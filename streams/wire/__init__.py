"""What goes on the wire: Avro schemas and their names, the codec, domain <-> record mapping, the partitioner."""
