"""Reference data every worker follows whole from compacted topics: the network in force, the catalog of aliases,
the transfer suggestions. May import ops."""
