"""Operations: health (ready and live, with reasons), Prometheus metrics, log format and filters, the clock.
Imports no other room."""
