"""``deid stack`` says when it is ready: the polling of the Prefect API, its progress lines and its timeout,
with the API replaced (the real server is in ``tests/flows/test_deployment.py``)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

NAMES = ["anonymize/a", "anonymize-ferg/a", "anonymize/b", "anonymize-ferg/b"]


def test_wait_registered_says_progress_when_it_changes_and_returns_every_name():
    from flows.stack import wait_registered

    polls = iter([[], NAMES[:1], NAMES[:1], NAMES[:3], NAMES])
    said: list[str] = []
    got = wait_registered(lambda: next(polls), NAMES, say=said.append, interval=0, progress_every=0)
    assert got == NAMES
    # one line per change of the count, none for a poll that found nothing new, none once all are there
    assert said == ["registering deployments: 0/4", "registering deployments: 1/4", "registering deployments: 3/4"]


def test_wait_registered_says_progress_at_most_once_per_interval():
    from flows.stack import wait_registered

    polls = iter([NAMES[:1], NAMES[:2], NAMES[:3], NAMES])
    said: list[str] = []
    wait_registered(lambda: next(polls), NAMES, say=said.append, interval=0, progress_every=60)
    assert said == ["registering deployments: 1/4"]


def test_wait_registered_names_what_is_missing_after_the_timeout():
    from flows.stack import wait_registered

    with pytest.raises(TimeoutError) as exc:
        wait_registered(lambda: NAMES[:3], NAMES, timeout=0.2, say=lambda _: None, interval=0.05)
    assert str(exc.value) == "not ready after 0 s: 3/4 deployments registered; missing anonymize-ferg/b"


def test_wait_registered_stops_when_a_child_ended():
    from flows.stack import wait_registered

    assert wait_registered(lambda: NAMES[:1], NAMES, alive=lambda: False, say=lambda _: None) == NAMES[:1]


def test_a_deployment_left_by_an_earlier_stack_is_not_counted():
    from flows.stack import registered_deployments

    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    flows = {"anonymize": uuid.uuid4(), "anonymize-ferg": uuid.uuid4()}
    deployments = [SimpleNamespace(name="a", flow_id=flows["anonymize"], updated=since + timedelta(seconds=1)),
                   SimpleNamespace(name="a", flow_id=flows["anonymize-ferg"], updated=since - timedelta(days=1)),
                   SimpleNamespace(name="b", flow_id=flows["anonymize-ferg"], updated=since)]

    class Client:
        def read_deployments(self, deployment_filter):
            assert sorted(deployment_filter.name.any_) == ["a", "b"]
            return deployments

        def read_flows(self, flow_filter):
            return [SimpleNamespace(id=i, name=n) for n, i in flows.items() if i in flow_filter.id.any_]

    assert registered_deployments(Client(), NAMES, since) == ["anonymize/a", "anonymize-ferg/b"]


def test_a_config_that_does_not_load_stops_the_stack_before_any_server_starts(tmp_path, monkeypatch):
    from deid.errors import ConfigError
    from flows import stack

    monkeypatch.setattr(stack, "start_server", lambda *a, **kw: pytest.fail("a Prefect server was started"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndataset: {name: ferg}\nmethods: [{name: blur, params: {sigmaa: 2}}]\n")
    with pytest.raises(ConfigError, match="sigmaa"):
        stack.run_stack(tmp_path / "prefect", 4200, [bad], tmp_path / "logs", tmp_path)
