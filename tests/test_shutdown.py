"""Stopping on purpose, with real processes: a worker asked to stop finishes
(or gives back) what it runs and exits 0; gunicorn with gunicorn.conf.py
finishes the request in flight, refuses new connections, ends its live
streams and exits so that a new server takes the port at once. Marked
``faults`` (CI runs them); the figures print with ``pytest -s``."""
from __future__ import annotations

import signal
import textwrap
import threading
import time

import pytest

from guestguard.tasks import RELEASED
from guestguard.testing import event_host, free_port, wait_for
from guestguard.testing_processes import EventStream, get, killed_at_exit, paste_ini, refuses, start_gunicorn, stop

pytestmark = [pytest.mark.faults, pytest.mark.one_pass("services")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_worker_finishes_the_send_in_flight_and_takes_no_other(fault_lab, signum):
    """A send of 3 s is under way when the signal comes: it completes and is
    recorded, once; the messages still queued stay for the next worker; the
    worker exits 0 as soon as the send is done, well within its grace."""
    grace = 10
    lab = fault_lab({"jobs.shutdown_grace_seconds": str(grace)})
    recipients = lab.queue(3)
    worker = lab.start(threads=1, send_seconds=3)
    wait_for(lab.accepted, 30, "a send to start")
    status, took = stop(worker, signum, timeout=grace + 20)
    assert status == 0, lab.errors(worker)
    [sent] = lab.accepted()
    rows = lab.rows()
    assert (rows[sent["recipient"]].status, rows[sent["recipient"]].attempts) == ("succeeded", 1)
    assert [(rows[r].status, rows[r].attempts) for r in recipients if r != sent["recipient"]] == [
        ("pending", 0), ("pending", 0)], "no new task is taken once the signal came"
    assert 2 < took < grace, "it waits for the send, not for the whole grace period"
    print(f"\n{signal.Signals(signum).name}: the send in flight finished and the worker exited 0 "  # noqa: T201
          f"{took:.1f} s after the signal (grace {grace} s)")


def test_a_send_outlasting_the_grace_period_is_released_and_the_next_worker_sends_it(fault_lab):
    """The provider hangs: after the 2 s grace the job goes back to pending
    (lease cleared, last_error saying why), the worker exits 0, and a worker
    started right after sends it at once: its 60 s lease and the 300 s
    lost-task delay have not passed, so no reaper had a hand in it. Two
    deliveries in all (the first may have reached the provider), one
    Message-ID."""
    grace = 2
    lab = fault_lab({"jobs.shutdown_grace_seconds": str(grace), "jobs.lease_seconds": "60",
                     "jobs.lost_after": "300"})
    [recipient] = lab.queue(1)
    hung = lab.start(hang=True)
    wait_for(lab.accepted, 30, "the send to start")
    status, took = stop(hung, signal.SIGTERM, timeout=grace + 20)
    assert status == 0, lab.errors(hung)
    assert grace <= took < grace + 5
    row = lab.rows()[recipient]
    assert (row.status, row.claimed_at, row.lease_until, row.attempts) == ("pending", None, None, 1)
    assert row.last_error.startswith(RELEASED)
    restarted = time.monotonic()
    second = lab.start(ready=False)
    wait_for(lambda: lab.accepted(second.pid), 30, "the next worker to send it")
    picked_up = time.monotonic() - restarted
    wait_for(lambda: lab.rows()[recipient].status == "succeeded", 10, "the send to be recorded")
    deliveries = lab.accepted(recipients=[recipient])
    assert len(deliveries) == 2 and len({e["message_id"] for e in deliveries}) == 1
    assert lab.rows()[recipient].attempts == 2
    print(f"\nreleased after the {grace} s grace (the worker exited 0 {took:.1f} s after SIGTERM); "  # noqa: T201
          f"the next worker, started at once, sent it {picked_up:.1f} s later (process start included); "
          f"{len(deliveries)} deliveries in all")


# --- gunicorn ----------------------------------------------------------------------

SLOW = textwrap.dedent('''
    """Holds GET /slow?seconds=N for N seconds (noting when it starts), then
    lets the app answer it as GET /health."""
    import pathlib, time

    def make_filter(global_conf, **local_conf):
        def wrap(app):
            def slow(environ, start_response):
                if environ["PATH_INFO"] == "/slow":
                    pathlib.Path(__file__).with_name("slow.started").touch()
                    time.sleep(float(environ["QUERY_STRING"].partition("=")[2]))
                    environ = {**environ, "PATH_INFO": "/health", "QUERY_STRING": ""}
                return app(environ, start_response)
            return slow
        return wrap
''')


def test_gunicorn_stops_gracefully_and_a_new_server_takes_the_port_at_once(make_app, run_in_request, db_url,
                                                                            base_settings, tmp_path):
    """With gunicorn.conf.py (2 workers): a live stream and a 3 s request are
    open when the master gets SIGTERM. The stream is told to reconnect and
    ends at once; new connections are refused while the request finishes;
    it answers 200; the master exits as soon as it has, and a new server
    starts on the same port right after."""
    app = make_app()
    host = event_host(app, run_in_request, {"name": "Gala", "status": "published",
                                            "starts_at": "2031-06-01T18:00:00+00:00",
                                            "ends_at": "2031-06-01T23:00:00+00:00", "timezone": "UTC"})
    ticket = app.post_json("/api/v1/auth/stream-ticket", {"event_id": host["event"]["id"]}, headers=host["ada"],
                           status=201).json
    (tmp_path / "slow.py").write_text(SLOW)
    ini = paste_ini(tmp_path / "web.ini", base_settings, pipeline=["slow"])
    port = free_port()
    with killed_at_exit(start_gunicorn(ini, port, tmp_path / "gunicorn.err", pythonpath=[tmp_path],
                                       WEB_CONCURRENCY="2")) as server:
        stream = EventStream(port, ticket["stream_url"])
        stream.read_until(b": connected\n")
        answers = []
        in_flight = threading.Thread(target=lambda: answers.append(get(port, "/slow?seconds=3")))
        in_flight.start()
        wait_for((tmp_path / "slow.started").exists, 10, "the slow request to be in flight")
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        stream.read_until(b"event: reconnect\n")
        assert stream.rest() == b"data: {}\n\n", "the stream ends after telling the page to reconnect"
        stream_ended = time.monotonic() - signalled
        wait_for(lambda: refuses(port), 3, "new connections to be refused")
        refused = time.monotonic() - signalled
        assert in_flight.is_alive(), "refused while the request in flight was still being served"
        in_flight.join(15)
        [(status, _)] = answers
        assert status == 200
        answered = time.monotonic() - signalled
        assert server.wait(20) == 0
        exited = time.monotonic() - signalled
    assert stream_ended < 1.5
    # graceful_timeout is 20 s: well under half of it means the master did
    # not wait for it (with room for a loaded machine).
    assert exited - answered < 8, "the master exits once the request is answered, not at graceful_timeout"
    restarted = time.monotonic()
    with killed_at_exit(start_gunicorn(ini, port, tmp_path / "gunicorn-again.err", pythonpath=[tmp_path],
                                       WEB_CONCURRENCY="2")) as again:
        serving = time.monotonic() - restarted
        assert get(port, "/health")[0] == 200
        status, idle_stop = stop(again, signal.SIGTERM, timeout=30)
        assert status == 0
    assert idle_stop < 8, "an idle server stops at once, not at graceful_timeout"
    print(f"\nSIGTERM with a stream and a 3 s request open: stream told to reconnect and ended in "  # noqa: T201
          f"{stream_ended:.2f} s, new connections refused after {refused:.2f} s, the request answered 200 "
          f"after {answered:.2f} s, the master exited after {exited:.2f} s; a new server on the same port "
          f"answered {serving:.1f} s after it was started; an idle server stopped in {idle_stop:.2f} s")


def both_lengths(port: int) -> bytes:
    """The answer to a request whose body has both a Content-Length and a
    chunked Transfer-Encoding (proxies may read it one way, the server the
    other: request smuggling)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        return connection.recv(4096)


def timed_health(port: int) -> float:
    started = time.monotonic()
    status, _ = get(port, "/health", timeout=5)
    assert status == 200
    return time.monotonic() - started


@pytest.mark.parametrize("options, streams", [((), 4), (("--worker-class", "sync", "--threads", "1"), 0)])
def test_health_answers_with_every_stream_a_server_allows_taken(make_app, run_in_request, base_settings, tmp_path,
                                                                options, streams):
    """The documented production command (gunicorn.conf.py, one worker here
    so every stream lands in it): with guard.stream.max_streams streams open,
    the next stream is refused with 503 and /health, the API and the pages
    keep answering. Under a sync worker, which one stream would hold whole,
    no stream is served at all."""
    app = make_app()
    host = event_host(app, run_in_request, {"name": "Gala", "status": "published",
                                            "starts_at": "2031-06-01T18:00:00+00:00", "timezone": "UTC"})

    def stream_url() -> str:
        return app.post_json("/api/v1/auth/stream-ticket", {"event_id": host["event"]["id"]},
                             headers=host["ada"], status=201).json["stream_url"]

    ini = paste_ini(tmp_path / "web.ini", {**base_settings, "guard.stream.max_per_holder": "10"})
    port = free_port()
    with killed_at_exit(start_gunicorn(ini, port, tmp_path / "gunicorn.err", options=options,
                                       WEB_CONCURRENCY="1")) as server:
        held = [EventStream(port, stream_url()) for _ in range(streams)]
        for stream in held:
            stream.read_until(b": connected\n")
        status, body = get(port, stream_url())
        assert status == 503 and b"streams_full" in body
        slowest = max(timed_health(port) for _ in range(20))
        assert get(port, "/api/v1/openapi.json")[0] == 200
        assert get(port, "/login")[0] == 200
        assert both_lengths(port).startswith(b"HTTP/1.1 400 "), "a body framed two ways is refused"
        stop(server, signal.SIGTERM, timeout=30)
    assert slowest < 2, "a request waited on the streams"
    print(f"\n{streams} streams open ({' '.join(options) or 'gunicorn.conf.py'}): the next refused with 503; "  # noqa: T201
          f"/health answered 20 times, the slowest in {slowest * 1000:.0f} ms")
