"""The worker's wall clock in epoch milliseconds (event times and `now` are epoch ms throughout)."""

import time


def now_ms() -> int:
    return int(time.time() * 1000)
