"""Kafka for stocksync: the topic registry, client factories with the project's settings, topic admin, the
network topic, and the choice of which cluster to use."""
