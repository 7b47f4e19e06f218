"""A channel is a plugin too: a plugin declares one (its name, the guest's
contact field, quiet hours) and a provider for it, and hosts use it with no
change to the core."""
import datetime as dt

import pytest
import time_machine

from guestguard.plugins import NotificationChannel, TransientDeliveryError, hookimpl
from guestguard.testing import add_guest, drain, event_host


class ChatPlugin:
    """The whole plugin: a "chatline" channel on the guest's phone, and its provider."""

    name, channels = "chatline", ("chatline",)

    def __init__(self):
        self.sent, self.busy = [], 1

    @hookimpl
    def register_notification_channels(self):
        return [NotificationChannel("chatline", contact_field="phone", quiet_hours=True, label="Chatline")]

    @hookimpl
    def register_notification_providers(self, settings):
        return [self]

    def send(self, message):
        if self.busy:
            self.busy -= 1
            raise TransientDeliveryError("chat gateway busy")
        self.sent.append(message)
        return f"chat-{len(self.sent)}"


EVENT = {"name": "Launch party", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London"}


def deliver(app):
    """Run the queued sends, then their retries a backoff step later, then the domain events."""
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock:
        drain(app.app.registry["huey"])
        clock.shift(2)
        drain(app.app.registry["huey"])
        drain(app.app.registry["huey"])


@pytest.fixture
def plugin():
    return ChatPlugin()


@pytest.fixture
def app(make_app, plugin):
    return make_app({"huey.immediate": "false", "notifications.chatline.provider": "chatline"},
                    plugins=[("chatline", plugin)])


def activity(app, host):
    return [item["summary"] for item in app.get(f"{host['url']}/activity", headers=host["ada"]).json["items"]]


def test_a_guest_who_prefers_the_plugins_channel_is_invited_on_it_with_retries(app, run_in_request, plugin):
    host = event_host(app, run_in_request, EVENT)
    guest = add_guest(app, host, phone="+44 20 7946 0958", preferred_channel="chatline")
    assert guest["preferred_channel"] == "chatline"
    sent = app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202).json
    assert sent["channel"] == "chatline", "preferred over email, which the guest also has"
    deliver(app)
    assert plugin.busy == 0, "the gateway was busy at first: the send was retried on the backoff"
    [message] = plugin.sent
    assert message.channel == "chatline" and message.recipient == "+442079460958"
    assert "Launch party" in message.text and "/access/" in message.text, "the text templates serve it"
    assert "Invitation sent to Grace Hopper by Chatline" in activity(app, host)
    delivery = app.get(f"{host['url']}/guests/{guest['id']}", headers=host["ada"]).json["guest"]["delivery"]
    assert (delivery["state"], delivery["channel"]) == ("sent", "chatline"), "the host sees it on the guest"


def test_an_event_can_invite_everyone_on_the_plugins_channel(app, run_in_request, plugin):
    host = event_host(app, run_in_request, {**EVENT, "invitation_channel": "chatline"})
    assert host["event"]["invitation_channel"] == "chatline"
    by_chat = add_guest(app, host, name="Phil", email=None, phone="+44 20 7946 0958")
    by_mail = add_guest(app, host, name="Mia", email="mia@example.com")  # no phone: email it is
    sent = app.post_json(f"{host['url']}/send-invitations", {}, headers=host["ada"], status=202).json
    assert sent["queued"] == 2
    channels = {g["id"]: g for g in app.get(f"{host['url']}/guests", headers=host["ada"]).json["guests"]}
    assert channels[by_chat["id"]]["invited_at"] and channels[by_mail["id"]]["invited_at"]
    deliver(app)
    assert [m.recipient for m in plugin.sent] == ["+442079460958"]


@pytest.mark.parametrize("field", ["preferred_channel", "invitation_channel"])
def test_a_channel_nobody_declared_or_that_reaches_no_guest_is_refused_naming_the_field(
        app, run_in_request, field):
    host = event_host(app, run_in_request, EVENT)
    for name in ("fax", "push"):
        body = {field: name}
        if field == "preferred_channel":
            refused = app.post_json(f"{host['url']}/guests", {"name": "X", **body}, headers=host["ada"], status=422)
        else:
            refused = app.patch_json(host["url"], body, headers=host["ada"], status=422)
        assert "chatline" in refused.json["error"]["fields"][field]


def test_a_declared_channel_gets_its_settings_and_a_bad_declaration_stops_startup(make_app):
    from guestguard.settings import SettingsError

    class Broken:
        @hookimpl
        def register_notification_channels(self):
            return [NotificationChannel("Chat Line!", contact_field="phone")]

    with pytest.raises(SettingsError, match="notification channel name 'Chat Line!'"):
        make_app(plugins=[("broken", Broken())])
    with pytest.raises(SettingsError, match="notifications.chatline.provider"):
        make_app({"notifications.chatline.provider": "nobody"}, plugins=[("chatline", ChatPlugin())])


def test_the_hosts_pages_name_the_plugins_channel(app, run_in_request, plugin):
    from guestguard.testing import signed_in

    host = event_host(app, run_in_request, EVENT)
    guest = add_guest(app, host, phone="+44 20 7946 0958", preferred_channel="chatline")
    browser = signed_in(app, run_in_request, "ada@example.com")
    page = browser.get(f"/events/{host['event']['id']}/guests/{guest['id']}")
    send = next(f for f in page.forms.values() if f.action.endswith("/send"))
    assert "Invitation sent to Grace Hopper by Chatline." in send.submit(status=303).follow().text
