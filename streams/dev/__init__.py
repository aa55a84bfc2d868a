"""Development tools: the local Kafka broker from Apache Kafka's jars, the demo, the simulator and its live view.
Nothing in the worker or the channel client imports these, except cluster selection when no cluster is set."""
