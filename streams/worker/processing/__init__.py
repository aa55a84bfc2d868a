"""What a batch decides, free of Kafka and faust: decode the inbound messages, apply the domain to each SKU once,
emit every output into an outbox (state records, ledger, positions, ATS feeds, replies, expiries). May import
reference, state, ops."""
