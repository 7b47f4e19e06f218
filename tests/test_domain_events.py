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
        request.ctx.emit("guest.created", {"name": "Ada"})
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


class DatabaseListener:
    """Listeners run inside the delivering task's transaction."""

    def __init__(self):
        self.counts = []

    @hookimpl
    def domain_event(self, event, request):
        from sqlalchemy import func, select

        from guestguard.notifications.models import Notification

        self.counts.append(request.db.scalar(select(func.count()).select_from(Notification)))


def test_listeners_can_use_the_database(make_app):
    listener = DatabaseListener()
    build(make_app, listener).post("/api/v1/test/emit")
    assert listener.counts == [0]


class MisspeltHook:
    @hookimpl
    def domain_evnet(self, event, request):
        pass


def test_a_plugin_with_a_misspelt_hook_is_skipped(make_app, caplog):
    app = make_app(plugins=[("misspelt", MisspeltHook())])
    assert app.app.registry["plugins"].get_plugin("misspelt") is None
    assert any("misspelt" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_a_plugin_with_a_misspelt_hook_stops_startup_when_strict(make_app):
    import pytest

    from guestguard.plugins import PluginLoadError

    with pytest.raises(PluginLoadError, match="domain_evnet"):
        make_app({"plugins.strict": "true"}, plugins=[("misspelt", MisspeltHook())])


class WritingListener:
    """Writes a row in its transaction, optionally failing afterwards."""

    def __init__(self, fail=False):
        self.fail = fail
        self.heard = 0

    @hookimpl
    def domain_event(self, event, request):
        from guestguard.notifications.models import Notification

        self.heard += 1
        request.db.add(Notification(channel="email", recipient=f"{id(self)}@example.com",
                                    template="test_message"))
        request.db.flush()
        if self.fail:
            raise RuntimeError("listener broke after writing")


class EventOnlyListener:
    def __init__(self):
        self.names = []

    @hookimpl
    def domain_event(self, event):
        self.names.append(event.name)


def test_each_listener_commits_or_rolls_back_on_its_own(make_app):
    from sqlalchemy import select

    from guestguard.notifications.models import Notification

    first, broken, last = WritingListener(), WritingListener(fail=True), WritingListener()
    app = build(make_app, first, broken, last)
    app.post("/api/v1/test/emit")
    assert (first.heard, broken.heard, last.heard) == (1, 1, 1)
    engine = app.app.registry["db.engine"]
    with engine.connect() as connection:
        recipients = set(connection.execute(select(Notification.recipient)).scalars())
    assert recipients == {f"{id(first)}@example.com", f"{id(last)}@example.com"}


def test_a_listener_may_take_only_the_event(make_app):
    listener = EventOnlyListener()
    build(make_app, listener).post("/api/v1/test/emit")
    assert listener.names == ["guest.created"]
