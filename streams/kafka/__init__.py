"""The connection to Kafka, and only that: client factories with the project's settings (confluent-kafka in
`clients` and `admin_api`, aiokafka in `aio`: the other packages reach the client libraries through these), the
topic registry, and the cluster the settings name. Operator tools live in streams.control; the development broker
in streams.dev."""
