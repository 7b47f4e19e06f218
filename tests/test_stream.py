"""The live stream: tickets, and Server-Sent Events over a real HTTP server.

The app is served by a real WSGI server on a free port (the stream is an
endless response, which only a real server can hand out piece by piece);
the RSVPs that feed it go through the same application."""
import datetime as dt
import http.client
import json
import os
import queue
import time
import uuid

import pytest
import time_machine
from webtest.http import StopableWSGIServer

from guestguard.activity.live import RESYNC, Full, MemoryBroker, RedisBroker
from guestguard.activity.stream import EventStream, redeem_ticket
from guestguard.testing import REDIS_ENV, create_team, in_request, session_bearer

EVENT = {"name": "Launch party", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London"}
TICKETS = "/api/v1/auth/stream-ticket"


@pytest.fixture
def app(make_app):
    return make_app({"guard.stream.heartbeat_seconds": "1"})


@pytest.fixture
def world(app, run_in_request):
    return build_world(app, run_in_request)


def build_world(app, run_in_request):
    workspace_id = run_in_request(create_team, app.app.registry)
    ada = session_bearer(app.app.registry, "ada@example.com")
    events = [app.post_json("/api/v1/events", {"workspace_id": workspace_id, **EVENT, "name": name},
                            headers=ada).json["event"] for name in ("Launch party", "Other party")]
    guest = app.post_json(f"/api/v1/events/{events[0]['id']}/guests", {"name": "Grace", "email": "g@example.com"},
                          headers=ada, status=201).json["guest"]
    token = app.post_json(f"/api/v1/events/{events[0]['id']}/guests/{guest['id']}/tokens", {},
                          headers=ada, status=201).json["token"]
    return {"ada": ada, "sam": session_bearer(app.app.registry, "sam@example.com"),
            "eve": session_bearer(app.app.registry, "eve@example.com"),
            "event": events[0], "other": events[1], "token": token, "workspace": workspace_id}


@pytest.fixture
def server(app):
    server = StopableWSGIServer.create(app.app, threads=4)
    assert server.wait()
    yield server
    server.shutdown()


def ticket_for(app, headers, event, status=201):
    return app.post_json(TICKETS, {"event_id": event["id"]}, headers=headers, status=status).json


class Stream:
    """A Server-Sent Events client on a plain HTTP connection."""

    def __init__(self, server, path, headers=None):
        self.connection = http.client.HTTPConnection("127.0.0.1", server.adj.port, timeout=10)
        self.connection.request("GET", path, headers=headers or {})
        self.response = self.connection.getresponse()

    def next_message(self, timeout=10.0) -> dict:
        """The next message: {"comment": ...} or {"event", "id", "data"}."""
        deadline = time.monotonic() + timeout
        fields: dict = {}
        while time.monotonic() < deadline:
            line = self.response.readline().decode()
            if line == "":
                raise EOFError("the stream ended")
            line = line.rstrip("\n")
            if line == "":
                if fields:
                    return fields
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                fields.setdefault("comment", value)
            else:
                fields[name] = value
        raise TimeoutError("no message in time")

    def next_activity(self, timeout=10.0) -> tuple[str, dict]:
        while True:
            message = self.next_message(timeout)
            if message.get("event") == "activity":
                return message["id"], json.loads(message["data"])

    def close(self):
        self.connection.close()


def rsvp(app, world, response="yes"):
    app.post_json(f"/api/v1/rsvp/{world['token']}", {"response": response, "plus_ones": 0})


def read_to_the_end(stream) -> None:
    """Read messages until the server ends the stream (EOFError)."""
    while True:
        stream.next_message(timeout=5)


def test_a_ticket_opens_the_stream_which_delivers_an_rsvp_as_it_happens(app, world, server):
    body = ticket_for(app, world["ada"], world["event"])
    assert body["ticket"].startswith("ggt_") and body["event_id"] == world["event"]["id"]
    assert body["stream_url"] == f"/events/{world['event']['id']}/activity/stream?ticket={body['ticket']}"
    expires = dt.datetime.fromisoformat(body["expires_at"]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=55) < expires <= dt.timedelta(seconds=60)

    stream = Stream(server, body["stream_url"])
    try:
        assert stream.response.status == 200
        assert stream.response.getheader("Content-Type").startswith("text/event-stream")
        assert "no-store" in stream.response.getheader("Cache-Control")
        assert stream.response.getheader("X-Accel-Buffering") == "no"
        hello = stream.next_message()
        assert hello == {"retry": "3000", "comment": "connected"}
        # An idle stream holds no database connection.
        assert app.app.registry["db.engine"].pool.checkedout() == 0
        assert stream.next_message(timeout=3) == {"comment": "heartbeat"}
        rsvp(app, world, "yes")
        item_id, item = stream.next_activity()
        assert item["kind"] == "rsvp.received" and item["summary"] == "Grace answered yes"
        assert item["id"] == item_id
    finally:
        stream.close()

    reused = app.get(body["stream_url"], status=401).json
    assert reused["error"]["code"] == "invalid_ticket"


def test_a_stream_resumes_after_its_last_event_id(app, world, server):
    rsvp(app, world, "maybe")
    first = app.get(f"/api/v1/events/{world['event']['id']}/activity", headers=world["ada"]).json["items"]
    rsvp(app, world, "no")
    rsvp(app, world, "yes")
    body = ticket_for(app, world["ada"], world["event"])
    stream = Stream(server, body["stream_url"], headers={"Last-Event-ID": first[0]["id"]})
    try:
        replayed = [stream.next_activity()[1] for _ in range(3)]
        # From 10 seconds before the last id: what the client has comes again
        # (it drops ids it has), then what it missed.
        assert replayed[0]["id"] == first[0]["id"]
        assert [item["summary"] for item in replayed[1:]] == [
            "Grace changed the answer from maybe to no", "Grace changed the answer from no to yes"]
    finally:
        stream.close()
    bad = ticket_for(app, world["ada"], world["event"])
    refused = app.get(bad["stream_url"], headers={"Last-Event-ID": "not-a-cursor"}, status=400).json
    assert refused["error"]["code"] == "invalid_cursor"


def test_reused_expired_forged_and_cross_event_tickets_get_one_answer(app, world):
    event, other = world["event"], world["other"]
    answers = []
    cross = ticket_for(app, world["ada"], other)
    answers.append(app.get(f"/events/{event['id']}/activity/stream?ticket={cross['ticket']}", status=401))
    answers.append(app.get(f"/events/{event['id']}/activity/stream?ticket=ggt_" + "x" * 43, status=401))
    answers.append(app.get(f"/events/{event['id']}/activity/stream?ticket=garbage", status=401))
    answers.append(app.get(f"/events/{event['id']}/activity/stream", status=401))
    answers.append(app.get(f"/events/not-an-id/activity/stream?ticket={cross['ticket']}", status=401))
    answers.append(app.get(f"/events/{uuid.uuid4()}/activity/stream?ticket={cross['ticket']}", status=401))
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock:
        late = ticket_for(app, world["ada"], event)
        clock.shift(61)
        answers.append(app.get(late["stream_url"], status=401))
    assert len({answer.body for answer in answers}) == 1, "nothing tells the cases apart"


def test_who_may_ask_for_a_ticket(app, world, run_in_request):
    event = world["event"]
    ticket_for(app, world["sam"], event)  # door staff watch the feed too
    assert app.post_json(TICKETS, {"event_id": event["id"]}, status=401).json["error"]["code"] == "unauthorized"
    outsider = ticket_for(app, world["eve"], event, status=404)
    missing = app.post_json(TICKETS, {"event_id": str(uuid.uuid4())}, headers=world["eve"], status=404).json
    assert outsider == missing, "an outsider cannot tell an event exists"
    assert app.post_json(TICKETS, {"event_id": "nope"}, headers=world["ada"], status=422).json["error"]["fields"]
    # A ticket dies with its holder's membership.
    body = ticket_for(app, world["sam"], event)

    def remove_sam(request):
        from sqlalchemy import delete

        from guestguard.accounts.models import User
        from guestguard.workspaces.models import Membership

        sam = request.db.query(User).filter_by(email="sam@example.com").one()
        request.db.execute(delete(Membership).where(Membership.user_id == sam.id))

    run_in_request(remove_sam, app.app.registry)
    app.get(body["stream_url"], status=401)


def test_a_stream_ends_when_its_time_is_up_and_replays_after_a_lost_subscription():
    class Clock:
        now = 0.0

        def __call__(self):
            return self.now

    clock, broker = Clock(), MemoryBroker()
    event_id = uuid.uuid4()
    listener = broker.listen(event_id)
    stream = EventStream(None, event_id, listener, None, heartbeat=0.01, lifetime=5, clock=clock)
    frames = iter(stream)
    assert next(frames).startswith(b"retry: 3000")
    assert next(frames) == b": heartbeat\n\n"
    broker.publish(event_id, json.dumps({"id": "c1", "kind": "rsvp.received"}))
    assert next(frames).startswith(b"id: c1\nevent: activity\ndata: ")
    broker.publish(event_id, json.dumps({"id": "c1", "kind": "rsvp.received"}))
    clock.now = 10
    assert next(frames) == b"event: reconnect\ndata: {}\n\n", "a duplicate is skipped; then time is up"
    stream.close()
    assert broker.hub.streams == 0

    replays = []

    class Recorder(EventStream):
        def replay(self):
            replays.append(self.last)
            return iter(())

    stream = Recorder(None, event_id, broker.listen(event_id), "c0", heartbeat=0.01, lifetime=5)
    frames = iter(stream)
    next(frames)
    broker.hub.broadcast(RESYNC)
    assert next(frames) == b": heartbeat\n\n"
    assert replays == ["c0", "c0"], "on connecting, and again after the subscription came back"
    stream.close()


def test_a_slow_stream_is_ended_instead_of_growing_without_bound():
    broker = MemoryBroker()
    listener = broker.listen("e")
    for n in range(600):
        broker.publish("e", json.dumps({"id": str(n)}))
    assert listener.overflowed and listener.get(timeout=0) is None


BROKERS = ["memory://"] + ([os.environ[REDIS_ENV]] if os.environ.get(REDIS_ENV) else [])


@pytest.mark.parametrize("url", BROKERS)
def test_activity_published_by_one_process_reaches_streams_of_another(url):
    if url.startswith("memory"):
        publisher = listening = MemoryBroker()
    else:
        publisher, listening = RedisBroker(url), RedisBroker(url)
    event_id, elsewhere = uuid.uuid4(), uuid.uuid4()
    mine, theirs = listening.listen(event_id), listening.listen(elsewhere)
    deadline = time.monotonic() + 5
    while True:  # the subscriber thread needs a moment to subscribe
        publisher.publish(event_id, json.dumps({"id": "x"}))
        try:
            assert json.loads(mine.get(timeout=0.2)) == {"id": "x"}
            break
        except queue.Empty:
            assert time.monotonic() < deadline, "nothing arrived"
    with pytest.raises(queue.Empty):
        theirs.get(timeout=0.3)
    mine.close()
    theirs.close()
    assert listening.hub.streams == 0


def test_a_ticket_dies_with_the_login_that_asked_for_it(app, world, run_in_request):
    from guestguard.accounts.models import WEB
    from guestguard.accounts.services import login
    from guestguard.testing import TEST_PASSWORD

    session = run_in_request(lambda r: login(r.ctx, email="ada@example.com", password=TEST_PASSWORD, kind=WEB),
                             app.app.registry)
    app.set_cookie("gg_session", session.cookie_token)
    body = app.post_json(TICKETS, {"event_id": world["event"]["id"]}, status=201).json
    token = app.get("/account").html.find("input", {"name": "csrf_token"})["value"]
    app.post("/logout", {"csrf_token": token})
    app.reset()
    app.get(body["stream_url"], status=401)


def test_a_reload_takes_the_old_streams_place_and_a_full_process_says_so(make_app, run_in_request):
    app = make_app({"guard.stream.max_per_holder": "1", "guard.stream.max_streams": "1"})
    workspace_id = run_in_request(create_team, app.app.registry)
    ada, sam = session_bearer(app.app.registry, "ada@example.com"), session_bearer(app.app.registry, "sam@example.com")
    event = app.post_json("/api/v1/events", {"workspace_id": workspace_id, **EVENT}, headers=ada).json["event"]
    server = StopableWSGIServer.create(app.app, threads=4)
    assert server.wait()
    streams = []
    try:
        streams.append(Stream(server, ticket_for(app, ada, event)["stream_url"]))
        assert streams[0].next_message() == {"retry": "3000", "comment": "connected"}
        full = Stream(server, ticket_for(app, sam, event)["stream_url"])
        assert full.response.status == 503 and full.response.getheader("Retry-After") == "30"
        assert json.loads(full.response.read())["error"]["code"] == "streams_full"
        # Ada reloads the page: her new stream takes the place of the old one.
        streams.append(Stream(server, ticket_for(app, ada, event)["stream_url"]))
        assert streams[1].next_message()["comment"] == "connected"
        with pytest.raises(EOFError):
            read_to_the_end(streams[0])
        assert app.app.registry["live.broker"].hub.streams == 1
        assert app.get("/health").status_int == 200
    finally:
        for opened in streams:
            opened.close()
        server.shutdown()
    hub = MemoryBroker().hub
    hub.listen("e", holder="a", limit=1)
    with pytest.raises(Full, match="this process serves as many"):
        hub.listen("e", holder="b", limit=1)
    assert hub.streams == 1


def test_a_process_that_stops_serving_ends_its_streams_and_each_page_reconnects(app, world, server):
    """end_streams (the web server's stop hook): an open stream gets
    "reconnect" at once and ends, and so does one opened afterwards; the
    page then asks for a new ticket, served by another process."""
    from guestguard.activity.live import end_streams

    stream = Stream(server, ticket_for(app, world["ada"], world["event"])["stream_url"])
    try:
        assert stream.next_message()["comment"] == "connected"
        started = time.monotonic()
        assert end_streams() >= 1
        assert stream.next_message(timeout=2) == {"event": "reconnect", "data": "{}"}
        with pytest.raises(EOFError):
            read_to_the_end(stream)
        assert time.monotonic() - started < 1, "not after the heartbeat or the stream's time"
    finally:
        stream.close()
    late = Stream(server, ticket_for(app, world["ada"], world["event"])["stream_url"])
    try:
        assert late.next_message()["comment"] == "connected"
        assert late.next_message(timeout=2) == {"event": "reconnect", "data": "{}"}
    finally:
        late.close()
    assert app.app.registry["live.broker"].hub.streams == 0


# --- access lost while watching, capacity, servers that cannot hold a stream -------------


@pytest.fixture
def quick(make_app, run_in_request):
    """An app checking access every second and serving one stream, its
    world, and a real server: (app, world, server)."""
    app = make_app({"guard.stream.heartbeat_seconds": "1", "guard.stream.recheck_seconds": "1",
                    "guard.stream.max_streams": "1"})
    people = build_world(app, run_in_request)
    server = StopableWSGIServer.create(app.app, threads=4)
    assert server.wait()
    yield app, people, server
    server.shutdown()


def ends_within(stream, seconds: float) -> tuple[str, float]:
    """The event that ends the stream, and how long it took to come."""
    started = time.monotonic()
    while True:
        message = stream.next_message(timeout=seconds)
        if message.get("event") in ("ended", "reconnect"):
            return message["event"], time.monotonic() - started


def test_signing_out_ends_an_open_stream_within_seconds(quick):
    app, world_, server = quick
    stream = Stream(server, ticket_for(app, world_["ada"], world_["event"])["stream_url"])
    assert stream.next_message() == {"retry": "3000", "comment": "connected"}
    app.post_json("/api/v1/auth/logout", {}, headers=world_["ada"], status=204)
    event, took = ends_within(stream, 5)
    assert (event, took < 3) == ("ended", True)
    with pytest.raises(EOFError):
        stream.next_message(timeout=2)


def test_a_member_removed_while_watching_loses_the_stream_within_seconds(quick):
    app, world_, server = quick
    stream = Stream(server, ticket_for(app, world_["sam"], world_["event"])["stream_url"])
    stream.next_message()
    members = app.get(f"/api/v1/workspaces/{world_['workspace']}/members", headers=world_["ada"]).json
    sam = next(m["id"] for m in members["members"] if m["email"] == "sam@example.com")
    app.delete(f"/api/v1/workspaces/{world_['workspace']}/members/{sam}", headers=world_["ada"], status=204)
    assert ends_within(stream, 5)[0] == "ended"


def test_a_full_process_answers_503_and_leaves_the_ticket_usable(quick):
    app, world_, server = quick
    first = Stream(server, ticket_for(app, world_["ada"], world_["event"])["stream_url"])
    first.next_message()
    waiting = ticket_for(app, world_["sam"], world_["event"])["stream_url"]
    refused = Stream(server, waiting)
    assert refused.response.status == 503
    body = json.loads(refused.response.read())
    assert body["error"]["code"] == "streams_full" and refused.response.getheader("Retry-After") == "30"
    app.post_json("/api/v1/auth/logout", {}, headers=world_["ada"], status=204)  # ends the first stream
    assert ends_within(first, 5)[0] == "ended"
    deadline = time.monotonic() + 5
    while app.app.registry["live.broker"].hub.streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.app.registry["live.broker"].hub.streams == 0, "the first stream has ended"
    again = Stream(server, waiting)
    assert again.response.status == 200, again.response.read()
    again.close()


def test_a_server_serving_one_request_at_a_time_holds_no_stream(app, world):
    """A sync worker (wsgi.multithread false) would be held whole by a
    stream: the stream refuses itself, and its ticket stays good."""
    url = ticket_for(app, world["ada"], world["event"])["stream_url"]
    refused = app.get(url, extra_environ={"wsgi.multithread": False}, status=503).json["error"]
    assert refused["code"] == "streams_full" and "one request at a time" in refused["message"]
    assert app.app.registry["live.broker"].hub.streams == 0
    ticket = url.split("ticket=")[1]

    def redeem(request):  # the ticket was not burned
        return redeem_ticket(request.db, ticket, uuid.UUID(world["event"]["id"])) is not None

    assert in_request(app.app.registry, redeem) is True
