"""The retry runtime's parts on their own: policy, circuit breaker, retry table, config."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from hub.config import load_config
from hub.errors import ConfigError
from hub.retry import CircuitBreaker, RetryPolicy, now_utc
from hub.settings import Settings


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(initial_delay_s=1.0, max_delay_s=10.0)
    rng = random.Random(7)
    for attempts, base in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (20, 10.0)):
        delays = [policy.delay(attempts, rng) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays)
        assert len({round(d, 6) for d in delays}) > 100  # jittered, not one value


def test_a_policy_is_spent_by_attempts_or_by_time() -> None:
    policy = RetryPolicy(max_attempts=3, max_total_s=60)
    start = now_utc()
    assert not policy.exhausted(2, start, start + timedelta(seconds=59))
    assert policy.exhausted(3, start, start)
    assert policy.exhausted(1, start, start + timedelta(seconds=60))


def test_one_event_failing_again_and_again_does_not_open_the_circuit() -> None:
    breaker = CircuitBreaker(threshold=3, open_s=60)
    for _ in range(10):
        assert breaker.allow()
        breaker.failure("poison")
    assert breaker.closed


def test_failures_of_different_events_open_it_and_a_probe_closes_it() -> None:
    breaker = CircuitBreaker(threshold=3, open_s=0.0, max_open_s=0.0)
    breaker.failure("a")
    breaker.failure("b")
    assert breaker.closed
    breaker.success()  # a success in between starts the count again
    for event in ("c", "d", "e"):
        breaker.failure(event)
    assert breaker.state == "open"
    assert breaker.allow()  # open_s elapsed: half-open, one probe
    assert breaker.state == "half-open"
    assert not breaker.allow()  # only one probe at a time
    breaker.failure("probe")
    assert breaker.state == "open"
    assert breaker.allow()
    breaker.success()
    assert breaker.closed and breaker.allow()


def test_while_open_nothing_is_allowed_until_its_time() -> None:
    breaker = CircuitBreaker(threshold=1, open_s=3600)
    breaker.failure("a")
    assert not breaker.allow()
    assert 3500 < breaker.retry_in() <= 3600


def _config(tmp_path: Path, route_extra: str, limits: str = "{}") -> Path:
    path = tmp_path / "hub.yaml"
    path.write_text(
        f"""
connections:
  erp:
    connector: http
    options: {{url: "http://127.0.0.1:9/x"}}
    limits: {limits}
routes:
  - name: to-erp
    from: canonical.order
    to: erp
{route_extra}
"""
    )
    return path


def test_route_retry_policy_and_connection_limits_are_read(tmp_path: Path) -> None:
    cfg = load_config(
        _config(
            tmp_path,
            "    retry: {max_attempts: 3, initial_delay: 250ms, max_delay: 2m, ordered: false}",
            "{rate: 50, burst: 5, circuit_breaker: {failures: 2, open_for: 1m}}",
        )
    )
    policy = cfg.outbound[0].policy(Settings(retry_max_total_s=99))
    assert policy == RetryPolicy(
        max_attempts=3, initial_delay_s=0.25, max_delay_s=120, max_total_s=99, ordered=False
    )
    limits = cfg.limits["erp"]
    assert (limits.rate, limits.burst) == (50, 5)
    assert limits.circuit_breaker is not None
    assert (limits.circuit_breaker.failures, limits.circuit_breaker.open_for) == (2, 60)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("    retry: {initial_delay: soon}", "'soon' is not a duration"),
        ("    retry: {initial_delay: 1h, max_delay: 1m}", "initial_delay is longer than max_delay"),
        ("    retry: {max_attempts: 0}", "greater than or equal to 1"),
        ("    retry: {tries: 3}", "unknown key"),
    ],
)
def test_a_bad_retry_policy_is_refused_with_its_line(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, extra))
    assert message in str(caught.value)
    assert "hub.yaml:11" in str(caught.value)
