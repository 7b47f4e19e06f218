"""Every hook a GuestGuard plugin can implement.

Each hook is documented in docs/plugins.md (a test keeps the two in step).
Registry hooks (``register_*``) collect a list from every plugin; ``configure``,
``domain_event`` and ``domain_events`` are called on every plugin in turn.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("guestguard")


@hookspec
def register_settings():
    """Declare settings this plugin reads.

    Return a list of :class:`guestguard.plugins.Setting`. Declared settings are
    typed and validated at startup, get a ``GG_*`` environment override, and an
    undeclared key in the plugin's namespace stops startup as a likely typo.
    """


@hookspec
def register_notification_channels():
    """Return a list of :class:`guestguard.plugins.NotificationChannel`.

    A channel is a kind of message (``email``, ``sms``, ``push`` are the
    core's, declared through this hook too): its name, the guest's contact
    field it uses and whether quiet hours apply. Called before settings are
    read, so each declared channel gets its ``notifications.<name>.provider``
    and ``notifications.<name>.fallback`` settings.
    """


@hookspec
def register_notification_providers(settings):
    """Return a list of notification providers.

    ``settings`` is the validated settings mapping. Each provider has a unique
    ``name``, the ``channels`` it serves (``email``, ``sms``, ``push``) and a
    ``send(message)`` method; see :class:`guestguard.plugins.NotificationProvider`.
    Which provider serves a channel is chosen by ``notifications.<channel>.provider``.
    """


@hookspec
def register_webhook_handlers(settings):
    """Return a list of webhook handlers, one per provider name.

    Each has a ``provider`` (the name its receiving view stores webhooks
    under with ``guestguard.webhooks.receive``) and ``handle(ctx, webhook)``
    (:class:`guestguard.plugins.WebhookHandler`), which the worker calls once
    per stored webhook, retried with backoff while it raises.
    """


@hookspec
def register_billing_backends(settings):
    """Return a list of billing backends (:class:`guestguard.plugins.BillingBackend`).

    Each has a unique ``name`` and talks to one payment provider: Checkout
    and portal pages, and reading a subscription or a checkout as the
    provider has it now. Which one serves is chosen by ``billing.backend``;
    the provider's webhooks reach the core through the webhook inbox
    (``register_webhook_handlers``) and apply what the backend reads with
    ``guestguard.billing.apply_subscription``.
    """


@hookspec
def register_captcha_verifiers(settings):
    """Return a list of CAPTCHA verifiers.

    Each has a unique ``name``, a ``widget`` (:class:`guestguard.plugins.CaptchaWidget`
    telling the forms which script and site key to use, or None for verifiers
    with nothing to show) and ``verify(token, remote_ip) -> bool``, which raises
    :class:`guestguard.plugins.CaptchaUnavailable` when the service cannot be
    reached. Which one protects signup and forgot-password is chosen by
    ``captcha.verifier``.
    """


@hookspec
def register_access_rules(settings):
    """Return a list of access rules that score each use of an invitation link.

    Each has a unique ``name`` and ``evaluate(history) -> Finding | None``
    (:class:`guestguard.plugins.AccessRule`). Rules run in the worker after
    the guest's request committed, never in the guest's request; a rule that
    raises is logged and skipped. A finding becomes a flag on the guest for
    the host to review. ``guard.rules_disabled`` switches rules off by name.
    """


@hookspec
def register_importers(settings):
    """Return a list of guest-list importers: readers of spreadsheet files.

    Each has a unique ``name``, the file ``extensions`` and ``media_types`` it
    reads, ``recognizes(head) -> bool`` (the file's first bytes: its magic
    number) and ``read(data, options) -> Table`` yielding rows of text cells
    lazily (:class:`guestguard.plugins.Importer`). An importer that can also
    write its format for the guest-list export has ``write(rows) -> bytes``
    and ``media_type``.
    """


@hookspec
def register_privacy_jobs(settings):
    """Return a list of :class:`guestguard.plugins.PrivacyJob`: the data map.

    Every area and plugin that stores personal data declares it here, table
    by table (:class:`guestguard.plugins.PersonalData`: the columns, their
    category, whose data it is, how it is exported and how it is erased). A
    job's ``forget_guest(ctx, guest)`` erases what it holds about one guest
    when a host forgets them. A test fails when a model has a column that
    looks personal and no job claims it.
    """


@hookspec
def configure(config):
    """Extend the Pyramid configuration: routes, views, templates, tasks.

    Called once at startup after the core areas are included. Use
    ``config.add_task(func)`` to register Huey tasks and
    ``config.add_periodic_task(func, crontab)`` for periodic ones.
    """


@hookspec
def domain_event(event, request):
    """Receive a domain event after the transaction that caused it committed.

    ``event`` is a :class:`guestguard.plugins.DomainEvent` (``id``, ``name``,
    ``data``, ``occurred_at``, ``workspace_id``, ``aggregate``). Delivery is
    at least once, in order per aggregate: deduplicate by ``event.id``. An
    exception raised here is logged, rolls back this plugin's work and is
    retried later for this plugin only; it does not affect the request or the
    other plugins.
    """


@hookspec
def domain_events(events, request):
    """Receive the domain events of one batch at once (a bulk action's).

    ``events`` is a list of :class:`guestguard.plugins.DomainEvent`, in the
    order they occurred. A plugin implementing this hook is called once per
    batch instead of ``domain_event`` once per event (it need not implement
    both; when it does, only this one is called). The rest is as for
    ``domain_event``: after commit, at least once, in order per aggregate,
    in one transaction with the record that the plugin has them. When it
    raises, that transaction is rolled back and the plugin is called again
    with each event of the batch alone (a list of one), each in a
    transaction of its own: the events it raises on then are retried later.
    """
