"""The worker's HTTP API: readiness, liveness, metrics, OpenAPI and the query and sourcing endpoints, as named
handlers free of faust (the runtime mounts them on faust's web server). May import flow, reference, state, ops."""
