"""The stock table: the key layout, the local stores behind one protocol (memory, RocksDB: the only room that
imports rocksdict), the table as a transaction reads and writes it, one SKU's records, and the changelog reader
that restores a partition taken over and follows standby partitions. May import ops."""
