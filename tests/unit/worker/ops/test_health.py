"""Readiness and liveness from what the worker's parts report, on a clock the test moves."""

from __future__ import annotations

from streams.worker.ops.health import BROKER_STALE_S, DEAD_STALL_S, STALL_S, Health


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def health() -> tuple[Health, Clock]:
    clock = Clock()
    found = Health(clock)
    found.broker_answered()
    return found, clock


def test_ready_once_recovered_and_not_rebalancing() -> None:
    found, _ = health()
    assert found.not_ready(recovered=False, rebalancing=False) == ["recovering its stock table partitions"]
    assert found.not_ready(recovered=True, rebalancing=True) == ["the workers are rebalancing"]
    assert found.not_ready(recovered=True, rebalancing=False) == []
    assert found.not_live(reader_running=True) == []


def test_not_ready_while_kafka_does_not_answer_but_still_live() -> None:
    found, clock = health()
    clock.now += BROKER_STALE_S + 1
    found.broker_failed("Local: Broker transport failure")
    [reason] = found.not_ready(recovered=True, rebalancing=False)
    assert "Kafka has not answered for 11 s" in reason and "transport failure" in reason
    assert found.not_live(reader_running=True) == []  # a restart would not bring Kafka back
    found.broker_answered()
    assert found.not_ready(recovered=True, rebalancing=False) == []


def test_a_failing_reader_is_not_ready_until_it_reads_again() -> None:
    found, _ = health()
    found.reader_failed("KafkaException: boom")
    assert found.not_ready(recovered=True, rebalancing=False) == ["reading the inputs fails: KafkaException: boom"]
    found.reader_read()
    assert found.not_ready(recovered=True, rebalancing=False) == []


def test_waiting_input_without_progress_is_a_stall_then_a_death() -> None:
    found, clock = health()
    found.input_lag(500)
    clock.now += STALL_S - 1
    found.broker_answered()
    found.input_lag(700)  # growing, but recently progressed: fine
    assert found.not_ready(recovered=True, rebalancing=False) == []
    clock.now += 2
    found.broker_answered()
    [reason] = found.not_ready(recovered=True, rebalancing=False)
    assert "no batch committed for 31 s while 700 input messages wait" in reason
    assert found.not_live(reader_running=True) == []
    clock.now += DEAD_STALL_S
    found.broker_answered()
    assert found.not_live(reader_running=True) != []
    found.committed()  # a batch goes through: all is well again
    assert found.not_ready(recovered=True, rebalancing=False) == [] and found.not_live(reader_running=True) == []


def test_an_idle_worker_never_stalls_and_a_stopped_reader_is_dead() -> None:
    found, clock = health()
    found.input_lag(0)
    clock.now += DEAD_STALL_S * 2
    found.broker_answered()
    found.input_lag(0)
    assert found.not_ready(recovered=True, rebalancing=False) == []
    assert found.not_live(reader_running=False) == ["the input reader has stopped"]
