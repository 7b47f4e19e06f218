"""/metrics: Prometheus text, only to the scrapers the settings allow (404
to everyone else, and to everyone when nothing is configured); requests by
route name and status class, the queue, the outbox, scheduled messages and
the webhook inbox read at scrape time, a source that cannot be read reported
as down rather than as zero; the worker's own endpoint; and the Grafana
dashboard in docs/ naming only metrics the app exports."""
from __future__ import annotations

import datetime as dt
import json
import re
import uuid

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from guestguard.activity.live import Hub
from guestguard.notifications.models import Notification
from guestguard.notifications.services import queue_notification
from guestguard.plugins import hookimpl
from guestguard.settings import SettingsError
from guestguard.testing import REPO_ROOT, free_port, in_request, wait_for
from guestguard.testing_processes import get
from guestguard.webhooks.models import InboxEntry

# In one pass only when make test runs both: the scrapes of real gunicorn and worker processes, on the
# production backends (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("services")

TOKEN = "scrape-" + "k" * 30
BEARER = {"Authorization": f"Bearer {TOKEN}"}
DASHBOARD = REPO_ROOT / "docs" / "grafana-dashboard.json"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(app, **kwargs) -> str:
    response = app.get("/metrics", headers=BEARER, **kwargs)
    assert response.content_type == "text/plain"
    assert response.headers["Cache-Control"] == "no-store"
    return response.text


# --- who may read them ---------------------------------------------------------------


def test_without_configuration_metrics_answer_404_like_a_missing_page(app):
    missing = app.get("/no-such-page", status=404)
    closed = app.get("/metrics", status=404)
    assert closed.content_type == missing.content_type
    assert "gg_http_requests_total" not in closed.text
    app.get("/metrics", headers=BEARER, status=404)


def test_the_token_is_required_and_compared_whole(make_app):
    app = make_app({"metrics.token": TOKEN})
    app.get("/metrics", status=404)
    app.get("/metrics", headers={"Authorization": f"Bearer {TOKEN[:-1]}"}, status=404)
    app.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}, status=404)
    app.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}, status=404)
    assert "gg_http_requests_total" in scrape(app)
    app.head("/metrics", headers=BEARER, status=200)


def test_the_address_allowlist_uses_the_client_address_the_proxies_vouch_for(make_app):
    app = make_app({"metrics.allowed_networks": "10.0.0.0/8, 2001:db8::/32",
                    "app.trusted_proxies": "192.0.2.1"})
    app.get("/metrics", status=404)  # from 127.0.0.1
    app.get("/metrics", extra_environ={"REMOTE_ADDR": "10.1.2.3"}, status=200)
    app.get("/metrics", extra_environ={"REMOTE_ADDR": "2001:db8::5"}, status=200)
    # Through the trusted proxy, the address it names counts...
    app.get("/metrics", extra_environ={"REMOTE_ADDR": "192.0.2.1"}, headers={"X-Forwarded-For": "10.9.9.9"},
            status=200)
    app.get("/metrics", extra_environ={"REMOTE_ADDR": "192.0.2.1"}, headers={"X-Forwarded-For": "203.0.113.7"},
            status=404)
    # ...and from anyone else, the header is not believed.
    app.get("/metrics", extra_environ={"REMOTE_ADDR": "203.0.113.7"}, headers={"X-Forwarded-For": "10.9.9.9"},
            status=404)


def test_with_token_and_allowlist_a_scrape_needs_both(make_app):
    app = make_app({"metrics.token": TOKEN, "metrics.allowed_networks": "10.0.0.0/8"})
    inside = {"REMOTE_ADDR": "10.0.0.7"}
    app.get("/metrics", extra_environ=inside, status=404)
    app.get("/metrics", headers=BEARER, status=404)
    app.get("/metrics", headers=BEARER, extra_environ=inside, status=200)


# --- what they say -------------------------------------------------------------------


def test_requests_are_counted_by_route_name_and_status_class_never_by_path(make_app):
    app = make_app({"metrics.token": TOKEN})
    before = scrape(app)
    for _ in range(3):
        app.get("/health")
    token = "Qx" + "a" * 41
    app.get(f"/api/v1/access/{token}", status=404)
    app.get(f"/nothing/here/{token}?email=grace@example.com", status=404)
    after = scrape(app)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("gg_http_requests_total", route="health", status="2xx") == 3
    assert grew("gg_http_request_duration_seconds_count", route="health") == 3
    assert grew("gg_http_requests_total", route="(unmatched)", status="4xx") == 1
    assert grew("gg_http_requests_total", route="metrics", status="2xx") == 1  # the first scrape
    assert token not in after and "grace" not in after and "/nothing" not in after
    routes = {labels for (name, labels) in samples(after) if name == "gg_http_requests_total"}
    assert all(dict(labels)["status"] in ("1xx", "2xx", "3xx", "4xx", "5xx") for labels in routes)


class Failing:
    """A plugin whose view raises."""

    @hookimpl
    def configure(self, config):
        config.add_route("metrics_boom", "/metrics-boom/{anything}")
        config.add_view(self.boom, route_name="metrics_boom")

    @staticmethod
    def boom(request):
        raise RuntimeError("kaput")


def test_errors_and_rate_limit_refusals_are_counted_under_their_route(make_app):
    app = make_app({"metrics.token": TOKEN, "ratelimit.invalid_link": "2/hour"}, plugins=[("failing", Failing())])
    before = scrape(app)
    app.get("/metrics-boom/1", status=500)
    app.get("/metrics-boom/2", status=500)
    for _ in range(2):
        app.get("/api/v1/access/" + "A" * 43, status=404)
    app.get("/api/v1/access/" + "B" * 43, status=429)
    after = scrape(app)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("gg_http_requests_total", route="metrics_boom", status="5xx") == 2
    assert grew("gg_http_requests_total", route="api_access", status="4xx") == 3
    blocked = {dict(labels)["route"]: count - value(before, name, **dict(labels))
               for (name, labels), count in samples(after).items() if name == "ratelimit_block_total"}
    assert {route: count for route, count in blocked.items() if count} == {"api_access": 1}


def test_the_outbox_the_queue_scheduled_messages_and_the_inbox_are_read_at_scrape_time(make_app, monkeypatch,
                                                                                       redis_url, tmp_path):
    queue_url = redis_url or "memory://"  # the production queue when the run has one
    app = make_app({"metrics.token": TOKEN, "huey.immediate": "false", "huey.url": queue_url,
                    "huey.name": f"scrape-{tmp_path.name}"})
    registry = app.app.registry
    registry["huey"].flush()
    empty = scrape(app)
    assert value(empty, "gg_metrics_source_up", source="database") == 1
    assert value(empty, "gg_metrics_source_up", source="queue") == 1
    assert value(empty, "gg_webhook_inbox_lag_seconds") == 0

    def queue(request):
        for n in range(2):
            queue_notification(request.ctx, channel="email", recipient=f"guest{n}@example.com",
                               template="test_message", context={"base_url": "https://gg.example"})
        waited = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=90)
        request.db.add(InboxEntry(id=uuid.uuid4(), provider="relay", event_id="evt-1", body="{}",
                                  received_at=waited))
        request.db.add(InboxEntry(id=uuid.uuid4(), provider="relay", event_id="evt-2", body="{}",
                                  received_at=waited - dt.timedelta(hours=1), status="succeeded"))

    in_request(registry, queue)
    text = scrape(app)
    assert value(text, "gg_outbox_messages", channel="email", status="pending") == 2
    assert value(text, "gg_task_queue_depth") == 2, "one send task per message, waiting for a worker"
    by_task = {dict(labels)["task"]: count for (name, labels), count in samples(text).items()
               if name == "gg_task_queue_depth_by_task"}
    assert list(by_task.values()) == [2] and not next(iter(by_task)).startswith("guestguard."), by_task
    # A scrape reads no more of the queue than QUEUE_SCAN tasks, however deep it is.
    monkeypatch.setattr("guestguard.ops.metrics.QUEUE_SCAN", 1)
    bounded = scrape(app)
    assert value(bounded, "gg_task_queue_depth") == 2
    assert value(bounded, "gg_task_queue_depth_by_task", task=next(iter(by_task))) == 1
    assert value(text, "gg_webhook_inbox", status="pending") == 1
    assert value(text, "gg_webhook_inbox", status="succeeded") == 1
    assert 90 <= value(text, "gg_webhook_inbox_lag_seconds") < 90 + 60, "the oldest waiting one, not the done one"
    assert "guest0@example.com" not in text

    in_request(registry, lambda request: request.db.execute(update(Notification).values(status="failed")))
    assert value(scrape(app), "gg_outbox_messages", channel="email", status="failed") == 2
    registry["huey"].flush()


def test_an_unreachable_database_or_queue_is_reported_down_and_the_rest_still_answers(make_app):
    app = make_app({"metrics.token": TOKEN, "db.url": f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
                    "db.pool_timeout": "2", "huey.url": f"redis://127.0.0.1:{free_port()}/0",
                    "huey.immediate": "false"})
    text = scrape(app)
    assert value(text, "gg_metrics_source_up", source="database") == 0
    assert value(text, "gg_metrics_source_up", source="queue") == 0
    assert not any(name.startswith(("gg_outbox", "gg_task_queue_depth")) for name, _ in samples(text))
    assert "gg_http_requests_total" in text


def test_sends_and_tasks_are_counted_by_provider_channel_outcome_and_task(make_app):
    app = make_app({"metrics.token": TOKEN})
    before = scrape(app)
    in_request(app.app.registry, lambda request: queue_notification(
        request.ctx, channel="email", recipient="grace@example.com", template="test_message",
        context={"base_url": "https://gg.example"}))
    after = scrape(app)
    assert (value(after, "gg_deliveries_total", provider="console", channel="email", outcome="sent")
            - value(before, "gg_deliveries_total", provider="console", channel="email", outcome="sent")) == 1
    runs = {dict(labels)["task"]: count for (name, labels), count in samples(after).items()
            if name == "gg_task_runs_total" and dict(labels)["outcome"] == "ok"}
    assert runs, "the send ran as a task"
    assert all(not task.startswith("guestguard.") for task in runs)


    def new(name: str, **only: str) -> dict[str, float]:
        counts = {dict(labels)["task"]: count - value(before, name, **dict(labels))
                  for (metric, labels), count in samples(after).items()
                  if metric == name and only.items() <= dict(labels).items()}
        return {task: count for task, count in counts.items() if count}

    assert new("gg_task_queue_wait_seconds_count") == new("gg_task_runs_total", outcome="ok") != {}, \
        "each queued task's wait, from the moment it was due to its start, is measured"


def test_live_streams_and_connections_in_use_are_gauged():
    streams = REGISTRY.get_sample_value("gg_live_streams_open")
    hub = Hub()
    first, second = hub.listen("event-1", holder="a"), hub.listen("event-1", holder="b")
    assert REGISTRY.get_sample_value("gg_live_streams_open") == streams + 2
    hub.remove(first)
    hub.remove(first)  # removed twice: counted once
    assert REGISTRY.get_sample_value("gg_live_streams_open") == streams + 1
    hub.listen("event-2", holder="b", per_holder=1)  # pushes out b's older stream
    assert REGISTRY.get_sample_value("gg_live_streams_open") == streams + 1
    hub.close()
    del second


def test_connections_in_use_rise_while_a_request_holds_one_and_fall_after(app, run_in_request):
    from sqlalchemy import text

    idle = REGISTRY.get_sample_value("gg_db_pool_in_use")

    def hold(request):
        request.db.execute(text("SELECT 1"))
        return REGISTRY.get_sample_value("gg_db_pool_in_use")

    assert run_in_request(hold) == idle + 1
    assert REGISTRY.get_sample_value("gg_db_pool_in_use") == idle


# --- the worker's endpoint -------------------------------------------------------------


@pytest.mark.faults
def test_the_worker_serves_its_own_metrics_to_the_allowed_scraper(fault_lab):
    port = free_port()
    lab = fault_lab({"metrics.worker_listen": f"127.0.0.1:{port}", "metrics.token": TOKEN})
    lab.start()
    lab.queue(3)
    wait_for(lambda: lab.statuses().get("succeeded") == 3, 60, "the worker to send the messages")

    task = "notifications.tasks.dispatch_notification"
    # A run is counted as its task returns, just after its outcome is committed.
    wait_for(lambda: value(scrape_port(port), "gg_task_runs_total", task=task, outcome="ok") >= 3, 10,
             "the task runs to be counted")
    text = scrape_port(port)
    assert value(text, "gg_deliveries_total", provider="faulty", channel="email", outcome="sent") == 3
    assert value(text, "gg_task_duration_seconds_count", task=task) >= 3
    assert get(port, "/metrics")[0] == 404, "no token"
    assert get(port, "/other")[0] == 404


# --- the dashboard -----------------------------------------------------------------------

PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "by", "without", "histogram_quantile", "max", "min", "avg", "count",
    "topk", "clamp_min", "le", "time", "on", "ignoring", "and", "or", "unless", "offset", "delta", "deriv",
    "max_over_time", "avg_over_time", "label_replace", "vector", "scalar", "abs", "absent", "bool",
}


def exported_names(text: str) -> set[str]:
    """What a scrape of the app can hold: each family's series names."""
    names = set()
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                    "summary": ("_sum", "_count", "")}.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def metric_names(expression: str) -> set[str]:
    bare = re.sub(r"\{[^}]*\}", "", expression)  # label matchers
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", bare)  # grouping labels
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # ranges
    bare = re.sub(r"\"[^\"]*\"", "", bare)
    return {word for word in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare)
            if word not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]?|e", word)}


def test_every_dashboard_expression_names_metrics_the_app_exports(make_app):
    app = make_app({"metrics.token": TOKEN})
    exported = exported_names(scrape(app))
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(expressions) >= 12
    used = set()
    for expression in expressions:
        names = metric_names(expression)
        assert names, f"{expression!r} names no metric"
        assert names <= exported, f"{expression!r} names {sorted(names - exported)}, which the app does not export"
        used |= names
    for wanted in ("gg_http_requests_total", "gg_http_request_duration_seconds_bucket", "gg_task_queue_depth",
                   "gg_task_duration_seconds_bucket", "gg_outbox_messages", "gg_scheduled_messages",
                   "gg_webhook_inbox_lag_seconds", "gg_deliveries_total", "ratelimit_block_total",
                   "guard_rule_errors_total", "guard_flags_raised_total", "gg_live_streams_open",
                   "gg_db_pool_in_use"):
        assert wanted in used, f"the dashboard shows no {wanted}"


# --- under gunicorn, several workers ------------------------------------------------------


def worker_pids(master: int) -> set[int]:
    from pathlib import Path

    return {int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()}


def scrape_port(port: int) -> str:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics", headers={**BEARER, "Connection": "close"})
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        connection.close()


@pytest.mark.faults
def test_under_gunicorn_with_two_workers_the_counts_add_up(base_settings, tmp_path):
    """gunicorn.conf.py, 2 workers, a metrics directory holding a previous
    server's file: the directory is emptied at start; after a small load
    every scrape, whichever worker answers, shows each request once; a
    worker killed and replaced keeps its counts in the totals and its
    gauges leave them."""
    import os
    import signal
    import subprocess
    import sys

    from guestguard.testing import command_env
    from guestguard.testing_processes import killed_at_exit, paste_ini, start_gunicorn

    directory = tmp_path / "metrics"
    directory.mkdir()
    previous = ("from prometheus_client import Counter; Counter('gg_http_requests_total', '', "
                "['route', 'status']).labels('(unmatched)', '4xx').inc(1000)")
    subprocess.run([sys.executable, "-c", previous], env=command_env(PROMETHEUS_MULTIPROC_DIR=str(directory)),
                   check=True)
    assert list(directory.glob("counter_*.db")), "a previous server's file"
    ini = paste_ini(tmp_path / "web.ini", {**base_settings, "metrics.token": TOKEN})
    port = free_port()
    load = 40
    with killed_at_exit(start_gunicorn(ini, port, tmp_path / "gunicorn.err", WEB_CONCURRENCY="2",
                                       PROMETHEUS_MULTIPROC_DIR=str(directory))) as server:
        wait_for(lambda: len(worker_pids(server.pid)) == 2, 30, "both workers to start")
        for n in range(load):
            assert get(port, f"/no-such-page/{n}")[0] == 404
            assert get(port, "/health")[0] == 200
        scrapes = [scrape_port(port) for _ in range(6)]
        for text in scrapes:
            assert value(text, "gg_http_requests_total", route="(unmatched)", status="4xx") == load
            assert value(text, "gg_http_request_duration_seconds_count", route="(unmatched)") == load
            assert value(text, "gg_http_requests_total", route="health", status="2xx") >= load
        scraped = [value(text, "gg_http_requests_total", route="metrics", status="2xx") for text in scrapes]
        assert scraped == sorted(scraped) and scraped[-1] >= 5, "each scrape counted once, in every worker's view"
        counting = {path.name.split("_")[-1].removesuffix(".db") for path in directory.glob("counter_*.db")}
        first = worker_pids(server.pid)

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in worker_pids(server.pid) and len(worker_pids(server.pid)) == 2, 30,
                 "the master to replace the killed worker")
        wait_for(lambda: get(port, "/health")[0] == 200, 30, "the replacement to answer")
        for n in range(load):
            assert get(port, f"/gone/{n}")[0] == 404
        text = scrape_port(port)
        assert value(text, "gg_http_requests_total", route="(unmatched)", status="4xx") == 2 * load, \
            "the killed worker's counts are still in the totals"
        assert not list(directory.glob(f"gauge_livesum_{victim}.db")), "its live gauges were dropped"
        assert value(text, "gg_db_pool_in_use") == 0, "no connection is in use between requests"
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    print(f"\n2 gunicorn workers, {load} + {load} requests with one worker killed between: every scrape "  # noqa: T201
          f"counted each once (files of pids {sorted(counting)})")


def test_a_worker_whose_metrics_port_is_taken_runs_without_them(caplog):
    import socket

    from guestguard.ops.metrics import serve_worker_metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = {"metrics.worker_listen": ("127.0.0.1", port), "metrics.token": TOKEN,
                    "metrics.allowed_networks": ()}
        assert serve_worker_metrics(settings) is None
    assert f"cannot be served on 127.0.0.1:{port}" in caplog.text


def test_an_allowlist_that_would_admit_whatever_the_proxy_forwards_is_refused(make_app):
    """Behind production.ini's proxy (127.0.0.1), allowing 127.0.0.1 would let
    in any request the proxy forwards without X-Forwarded-For: the app does
    not start that way, and with the token too the proxy's address alone
    does not pass."""
    with pytest.raises(SettingsError, match="'metrics.allowed_networks' and 'app.trusted_proxies' overlap"):
        make_app({"metrics.allowed_networks": "127.0.0.0/8", "app.trusted_proxies": "127.0.0.1"})
    app = make_app({"metrics.allowed_networks": "127.0.0.0/8", "app.trusted_proxies": "127.0.0.1",
                    "metrics.token": TOKEN})
    app.get("/metrics", status=404)
    app.get("/metrics", headers=BEARER, status=200)
