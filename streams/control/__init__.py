"""Operator tools on a cluster, used by the CLI (and by the worker to ensure its topics and read the network):
topic admin, least-privilege ACLs and users, the network and the catalog (YAML/CSV in, their compacted topics
out). They reach Kafka's admin API through streams.kafka (clients, admin_api)."""
