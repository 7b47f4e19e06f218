"""GuestGuard: personal invitations, RSVPs and a quiet guard against shared links."""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pyramid.config import Configurator

from guestguard.billing.plans import SETTINGS as BILLING_SETTINGS
from guestguard.notifications.channels import channel_settings, index_channels
from guestguard.plugins import build_plugin_manager, collect
from guestguard.routing import use_indexed_routes
from guestguard.settings import CORE_SETTINGS, SettingsError, SettingsReader, raw_flag, raw_list
from guestguard.tasks import start_in_process_consumer
from guestguard.web import default_templates_dir, one_request_class

# Areas in the order they are included; each has an ``includeme``.
AREAS = (
    "guestguard.network",
    "guestguard.audit",
    "guestguard.web",
    "guestguard.inputs",
    "guestguard.cors",
    "guestguard.errors",
    "guestguard.outages",
    "guestguard.db",
    "guestguard.rls",
    "guestguard.tasks",
    "guestguard.domain",
    "guestguard.notifications",
    "guestguard.webhooks",
    "guestguard.security",
    "guestguard.ratelimit",
    "guestguard.idempotency",
    "guestguard.context",
    "guestguard.contract",
    "guestguard.captcha",
    "guestguard.accounts",
    "guestguard.workspaces",
    "guestguard.imports",
    "guestguard.events",
    "guestguard.checkin",
    "guestguard.reminders",
    "guestguard.billing",
    "guestguard.activity",
    "guestguard.guard",
    "guestguard.privacy",
    "guestguard.ops",
    "guestguard.openapi",
)


def read_settings(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                  extra_plugins: Iterable[tuple[str, object]] = (),
                  load_entry_points: bool = True):
    """Load plugins, then read and validate every declared setting.
    Returns (settings, plugin manager, reader)."""
    environ = os.environ if environ is None else environ
    pm = build_plugin_manager(
        strict=raw_flag("plugins.strict", raw, environ),
        disabled=raw_list("plugins.disabled", raw, environ),
        extra=extra_plugins,
        load_entry_points=load_entry_points,
    )
    reader = SettingsReader()
    reader.declare(CORE_SETTINGS)
    reader.declare(BILLING_SETTINGS)
    reader.declare(collect(pm.hook.register_settings()))
    # Each channel a plugin declares has its provider and fallback settings.
    reader.declare(channel_settings(index_channels(collect(pm.hook.register_notification_channels())).values()))
    settings = reader.read(raw, environ)
    if not settings["app.templates_dir"]:
        settings["app.templates_dir"] = str(default_templates_dir())
    if not Path(settings["app.templates_dir"], "layout.jinja2").is_file():
        raise SettingsError(f"setting 'app.templates_dir' ({settings['app.templates_dir']}) "
                            "is not a GuestGuard templates directory: it has no layout.jinja2")
    settings.setdefault("tm.manager_hook", "pyramid_tm.explicit_manager")
    settings.setdefault("retry.attempts", "3")
    # The caller is identified inside the views, where errors have their
    # answers: pyramid_tm's user annotation would ask the security policy
    # above them, where an error is a bare 500.
    settings.setdefault("tm.annotate_user", "false")
    return settings, pm, reader


def make_config(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                extra_plugins: Iterable[tuple[str, object]] = (),
                load_entry_points: bool = True) -> Configurator:
    settings, pm, reader = read_settings(raw, environ, extra_plugins, load_entry_points)
    config = Configurator(settings=settings)
    use_indexed_routes(config)
    config.registry["plugins"] = pm
    config.registry["settings.reader"] = reader
    config.include("pyramid_retry")
    config.include("pyramid_tm")
    for area in AREAS:
        config.include(area)
    pm.hook.configure(config=config)
    one_request_class(config)
    return config


def main(global_config: Mapping[str, Any], **settings: Any):
    """The WSGI application (paste entry point ``guestguard:main``)."""
    config = make_config(settings)
    app = config.make_wsgi_app()
    if config.registry.settings["huey.in_process_worker"]:
        start_in_process_consumer(config.registry)
    return app
