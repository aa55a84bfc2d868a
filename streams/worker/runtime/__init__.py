"""The worker's runtime: the only room that imports faust and mode. faust runs the consumer group and its
assignor, declares the stock table and its changelog, opens the per-partition stores, drives recovery and hosts
the timers and the web server; this room adapts each of those to the rooms below (it may import all of them)."""
