"""Development tools: which cluster a development session uses (streams.dev.cluster), the local Kafka broker from
Apache Kafka's jars, the demo, the simulator and its live view. Nothing in the worker or the channel client imports
these: the CLI and the tests choose the development broker."""
