"""The flow of a batch: the input reader (a consumer of its own for the owned input partitions), the batch unit of
work (state, outputs and input offsets of a table partition in one transaction) and the Kafka transactions with
their fencing. May import processing, reference, state, ops."""
