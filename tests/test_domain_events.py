from guestguard.plugins import hookimpl


class Listener:
    def __init__(self, fail=False):
        self.events = []
        self.fail = fail

    @hookimpl
    def domain_event(self, event, request):
        if self.fail:
            raise RuntimeError("listener broke")
        self.events.append(event)


class EmittingRoute:
    @hookimpl
    def configure(self, config):
        config.add_route("emit", "/api/v1/test/emit")
        config.add_view(self.emit, route_name="emit", renderer="json", require_csrf=False)

    @staticmethod
    def emit(request):
        request.emit("guest.created", {"name": "Ada"})
        if request.params.get("fail"):
            raise RuntimeError("rolled back")
        return {}


def build(make_app, *listeners):
    plugins = [("route", EmittingRoute())]
    plugins += [(f"listener{i}", listener) for i, listener in enumerate(listeners)]
    return make_app(plugins=plugins)


def test_domain_events_reach_plugins_after_commit(make_app):
    listener = Listener()
    build(make_app, listener).post("/api/v1/test/emit")
    assert [(e.name, e.data) for e in listener.events] == [("guest.created", {"name": "Ada"})]
    assert listener.events[0].occurred_at.tzinfo is not None


def test_no_domain_event_for_a_rolled_back_request(make_app):
    listener = Listener()
    build(make_app, listener).post("/api/v1/test/emit?fail=1", status=500)
    assert listener.events == []


def test_a_failing_listener_affects_neither_the_request_nor_other_listeners(make_app, caplog):
    broken, healthy = Listener(fail=True), Listener()
    build(make_app, broken, healthy).post("/api/v1/test/emit", status=200)
    assert [e.name for e in healthy.events] == ["guest.created"]
    assert any("listener broke" in str(r.exc_info) for r in caplog.records if r.exc_info)
