"""GuestGuard plugin: SMS through Twilio, with its status callbacks and
inbound messages (STOP and START) taken in through signed webhooks.

Select it with ``notifications.sms.provider = twilio``. The provider sends
through the twilio SDK and asks Twilio to report each message's status to
``<twilio.public_base_url>/webhooks/twilio/status``; point the sending
number's (or Messaging Service's) incoming-message webhook at
``<twilio.public_base_url>/webhooks/twilio/inbound``.
"""
from __future__ import annotations

from guestguard.contract import Stream
from guestguard.plugins import Setting, as_float, as_str, as_url, hookimpl
from guestguard_twilio.provider import INBOUND_PATH, STATUS_PATH, TwilioConfig, TwilioProvider
from guestguard_twilio.webhooks import TwilioWebhooks, inbound_message, status_callback

__all__ = ["TwilioConfig", "TwilioProvider", "TwilioWebhooks", "configure", "register_notification_providers",
           "register_settings", "register_webhook_handlers"]

NAME = "twilio"


@hookimpl
def register_settings():
    return [
        Setting("twilio.account_sid", as_str, "", "The Twilio account SID (AC…)."),
        Setting("twilio.auth_token", as_str, "", "The account's auth token: authenticates our API calls and "
                "checks the signature of Twilio's webhooks.", secret=True),
        Setting("twilio.from_number", as_str, "", "The number texts are sent from, in E.164 form; or leave "
                "it empty and name a Messaging Service."),
        Setting("twilio.messaging_service_sid", as_str, "", "The Messaging Service (MG…) that picks the "
                "sender; exactly one of this and twilio.from_number is set."),
        Setting("twilio.public_base_url", as_url("http", "https", allow_empty=True), "",
                "The URL Twilio reaches this site at (the status callback URL is built from it, and "
                "webhook signatures are checked against it); empty means app.base_url."),
        Setting("twilio.timeout", as_float(1), 10.0, "Seconds to wait for Twilio's API."),
        Setting("twilio.api_base_url", as_url("http", "https"), "https://api.twilio.com",
                "Twilio's API; changed only to point at a stand-in in tests."),
    ]


@hookimpl
def register_notification_providers(settings):
    config = TwilioConfig.from_settings(settings)
    if settings.get("notifications.sms.provider") == NAME:
        config.check()  # chosen: settings that cannot work stop startup, naming the setting
    return [TwilioProvider(config)]


@hookimpl
def register_webhook_handlers(settings):
    return [TwilioWebhooks()]


@hookimpl
def configure(config):
    # Signed by Twilio, not by a form's CSRF token nor a login.
    config.registry["twilio.config"] = TwilioConfig.from_settings(config.get_settings())
    config.add_route("twilio_status", STATUS_PATH)
    config.add_view(status_callback, route_name="twilio_status", request_method="POST", require_csrf=False,
                    response={204: None})
    config.add_route("twilio_inbound", INBOUND_PATH)
    config.add_view(inbound_message, route_name="twilio_inbound", request_method="POST", require_csrf=False,
                    response={200: Stream("text/xml", "Empty TwiML (<Response/>): no reply is sent.")})
