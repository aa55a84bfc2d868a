"""Kafka for stocksync: the local jar broker, and the choice of which cluster to use."""
