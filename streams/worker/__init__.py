"""A stocksync worker: the faust app and its collaborators (table, batch unit of work, input reader, pipeline,
outputs, ATS publisher, expiry, network follower, HTTP routes, metrics). Run one with `stocksync worker`."""
