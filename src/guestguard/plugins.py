"""The plugin system, and the only module a plugin distribution imports.

Built-in default plugins and third-party ones (entry-point group
``guestguard``) are registered through the same function, one at a time, so
a plugin that fails to import is logged and skipped (fatal when
``plugins.strict = true``).
"""
from __future__ import annotations

import datetime as dt
import functools
import importlib
import logging
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points, version
from typing import Any, Protocol, runtime_checkable

import pluggy

from guestguard import hookspecs
from guestguard.settings import (  # re-exported for plugins
    Setting,
    SettingsError,
    as_bool,
    as_choice,
    as_date,
    as_float,
    as_int,
    as_list,
    as_str,
    as_url,
)
from guestguard.sms_segments import (  # re-exported for plugins
    SmsLength,
    estimate as estimate_segments,
    sms_body,
    too_long as too_many_segments,
)

__all__ = [
    "AccessHistory",
    "AccessRule",
    "AccessUse",
    "BillingBackend",
    "BillingRefused",
    "BillingUnavailable",
    "CaptchaUnavailable",
    "CaptchaVerifier",
    "CaptchaWidget",
    "CheckoutRequest",
    "CheckoutResult",
    "DomainEvent",
    "Finding",
    "Importer",
    "InboundWebhook",
    "NotificationChannel",
    "NotificationProvider",
    "OutgoingMessage",
    "PermanentDeliveryError",
    "PersonalData",
    "PluginInfo",
    "PrivacyJob",
    "Proration",
    "ReadOptions",
    "Setting",
    "SettingsError",
    "SmsLength",
    "SubscriptionState",
    "Table",
    "TransientDeliveryError",
    "UnreadableFile",
    "WebhookHandler",
    "as_bool",
    "as_choice",
    "as_date",
    "as_float",
    "as_int",
    "as_list",
    "as_str",
    "as_url",
    "binary_kind",
    "estimate_segments",
    "hookimpl",
    "sms_body",
    "too_many_segments",
]

log = logging.getLogger(__name__)

PROJECT = "guestguard"
ENTRY_POINT_GROUP = "guestguard"
hookimpl = pluggy.HookimplMarker(PROJECT)

# Registered exactly like entry points, in this order, before them.
DEFAULT_PLUGINS = (
    "guestguard.notifications.channels",
    "guestguard.notifications.console",
    "guestguard.captcha_builtin",
    "guestguard.guard.rules",
    "guestguard.activity.listeners",
    "guestguard.events.alerts",
    "guestguard.privacy.jobs",
)


class PluginLoadError(Exception):
    """A plugin could not be loaded while ``plugins.strict`` is on."""


# --- interfaces plugins implement --------------------------------------------


@dataclass(frozen=True)
class OutgoingMessage:
    """A rendered message handed to a provider.

    ``subject`` and ``html`` are empty for SMS. ``notification_id`` is stable
    across retries: providers that support idempotency keys should use it.
    ``message_id`` (email) is the ``Message-ID`` header to send, with its
    angle brackets: the same on every attempt of one notification, so a
    message that went out twice reads as one in mail clients.
    ``unsubscribe_url`` (email to guests) is to be sent as
    ``List-Unsubscribe: <url>`` with ``List-Unsubscribe-Post:
    List-Unsubscribe=One-Click``.
    """

    notification_id: uuid.UUID
    channel: str
    recipient: str
    sender: str
    subject: str
    text: str
    html: str = ""
    message_id: str = ""
    # Email a guest gets on a host's behalf: the one-click unsubscribe URL,
    # for the ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` headers
    # (RFC 8058). Empty for account mail, which has none.
    unsubscribe_url: str = ""
    # Email a guest gets on a host's behalf: the host's ``Reply-To`` address
    # when the event names one (replies reach the host, not the platform).
    reply_to: str = ""
    # Seconds the provider may take: bound every network call of ``send``
    # by it (connect and read timeouts). The core stops waiting a second
    # later and counts the message's outcome as unknown.
    timeout: float = 0.0


@dataclass(frozen=True)
class NotificationChannel:
    """A kind of message GuestGuard can send, declared by
    ``register_notification_channels``.

    ``contact_field`` names the guest's field that holds the address for it
    (``email`` or ``phone``); empty for a channel that does not reach guests
    (push). ``quiet_hours``: a guest message on it waits for the daytime
    hours of the recipient (``notifications.quiet_hours.*``), as SMS does.
    ``label`` is how hosts read it ("WhatsApp").
    """

    name: str
    contact_field: str = ""
    quiet_hours: bool = False
    label: str = ""


class DeliveryError(Exception):
    """Base of the two failures a provider may report."""


class PermanentDeliveryError(DeliveryError):
    """Retrying will not help (bad address, rejected content): stop, mark failed.

    ``suppress`` names a suppression reason (``"hard_bounce"``,
    ``"complaint"``, ``"stop"``) when the refusal says the address must not
    be written to again (a number that replied STOP to the sender): the
    address is listed, and the message ends ``suppressed`` instead of failed.
    """

    def __init__(self, *args: object, suppress: str | None = None) -> None:
        super().__init__(*args)
        self.suppress = suppress


class TransientDeliveryError(DeliveryError):
    """Try again later (timeout, throttling, 4xx from the server)."""


@runtime_checkable
class NotificationProvider(Protocol):
    name: str
    channels: tuple[str, ...]

    def send(self, message: OutgoingMessage) -> str | None:
        """Deliver ``message``; return the provider's message id (or None).

        Raise PermanentDeliveryError or TransientDeliveryError on failure; any
        other exception counts as transient.
        """

    # Optional: a provider that can be asked whether it accepted a message
    # defines ``find_accepted(message: OutgoingMessage) -> str | None``,
    # returning its message id for ``message`` (found by
    # ``message.notification_id`` or ``message.message_id``) or None when it
    # never accepted it, and raising when it cannot tell. The worker asks it
    # before sending again after an attempt whose outcome was lost.


@dataclass(frozen=True)
class InboundWebhook:
    """A provider's call, as stored in the webhook inbox and handed to the
    provider's handler by the worker: ``body`` exactly as it arrived,
    ``headers`` as the receiving view kept them, ``attempt`` counting from 1."""

    id: uuid.UUID
    provider: str
    event_id: str
    received_at: dt.datetime
    body: str
    headers: Mapping[str, str]
    attempt: int = 1


@runtime_checkable
class WebhookHandler(Protocol):
    provider: str

    def handle(self, ctx: Any, webhook: InboundWebhook) -> str | None:
        """Act on one stored webhook inside the worker's transaction (given
        the service context); return a note in words for the inbox row, or
        None. Raise to have it retried later: the transaction rolls back."""


class BillingUnavailable(Exception):
    """The billing provider could not be reached or answered with an error:
    nothing was changed on our side (503 ``billing_unavailable``)."""


class BillingRefused(Exception):
    """The billing provider refused what was asked (an unknown price, a
    subscription that does not exist): 422 naming it."""


@dataclass(frozen=True)
class CheckoutRequest:
    """What a billing backend needs to start a payment page for a plan.

    ``mode`` is ``subscription`` (monthly plans) or ``payment`` (a one-time
    plan such as Personal, bought for the one event ``event_id``, which the
    backend keeps with the session and gives back in ``CheckoutResult``);
    ``trial_days`` is 0 unless this is the workspace's first subscription;
    ``idempotency_key`` makes a retried request reuse the session the first
    one made."""

    workspace_id: uuid.UUID
    plan: str
    price_id: str
    mode: str
    customer_id: str | None
    customer_email: str
    trial_days: int
    success_url: str
    cancel_url: str
    idempotency_key: str
    event_id: uuid.UUID | None = None


@dataclass(frozen=True)
class SubscriptionState:
    """A subscription as the billing provider has it right now, read from
    the provider (never from a webhook's body)."""

    workspace_id: uuid.UUID | None
    customer_id: str
    subscription_id: str
    price_id: str
    status: str
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    trial_end: dt.datetime | None = None
    cancel_at_period_end: bool = False


@dataclass(frozen=True)
class CheckoutResult:
    """A Checkout Session as the provider has it: ``complete`` once paid (or
    the subscription started); ``subscription`` for subscription mode;
    ``payment_id`` identifies a one-time payment so it is counted once;
    ``event_id`` is the event a one-time plan was bought for; ``revoked``
    says why that payment no longer buys anything ("refunded" in full, or
    "disputed": a dispute open or lost), None while it stands."""

    session_id: str
    workspace_id: uuid.UUID | None
    customer_id: str | None
    mode: str
    price_id: str
    complete: bool
    subscription: SubscriptionState | None = None
    payment_id: str | None = None
    event_id: uuid.UUID | None = None
    revoked: str | None = None


@dataclass(frozen=True)
class Proration:
    """What changing a subscription's price costs now: ``amount_due`` in the
    currency's smallest unit (cents), as the provider's preview invoice says."""

    amount_due: int
    currency: str
    lines: tuple[str, ...] = ()


@runtime_checkable
class BillingBackend(Protocol):
    """Talks to one billing provider. Every method raises BillingUnavailable
    when the provider cannot be reached and BillingRefused when it says no."""

    name: str
    # Origins of the provider's Checkout and portal pages ("https://checkout.example").
    page_origins: tuple[str, ...]

    def checkout(self, request: CheckoutRequest) -> str:
        """A Checkout page's URL for the plan."""

    def portal(self, customer_id: str, return_url: str) -> str:
        """A self-service portal URL for the customer."""

    def read_checkout(self, session_id: str) -> CheckoutResult | None:
        """The checkout as the provider has it; None when it has no such session."""

    def read_subscription(self, subscription_id: str) -> SubscriptionState | None:
        """The subscription as the provider has it; None when it has none."""

    def preview_change(self, subscription_id: str, price_id: str) -> Proration:
        """What moving the subscription to ``price_id`` would charge now."""

    def change_price(self, subscription_id: str, price_id: str) -> SubscriptionState:
        """Move the subscription to ``price_id``, prorated."""

    def set_cancel_at_period_end(self, subscription_id: str, cancel: bool) -> SubscriptionState:
        """Cancel at the end of the period (True) or undo that (False)."""


class CaptchaUnavailable(Exception):
    """The verification service did not answer (timeout, 5xx, network)."""


@dataclass(frozen=True)
class CaptchaWidget:
    """What a form needs to show a CAPTCHA: the vendor's script, the element
    class and site key it looks for, the form field its token arrives in, and
    the origins the Content-Security-Policy must allow for it."""

    script_url: str
    element_class: str
    site_key: str
    response_field: str
    csp_sources: tuple[str, ...] = ()


@runtime_checkable
class CaptchaVerifier(Protocol):
    name: str
    widget: CaptchaWidget | None

    def verify(self, token: str, remote_ip: str | None) -> bool:
        """True when ``token`` proves a human; raise CaptchaUnavailable when
        the answer cannot be had."""


@dataclass(frozen=True)
class AccessUse:
    """One use of an invitation token, as the access rules see it.

    ``kind`` is ``view``, ``rsvp``, ``calendar`` or ``check_in``; ``outcome``
    is ``ok``, ``revoked`` or ``expired``. ``network`` is the address's /24
    (IPv4) or /48 (IPv6); ``device`` the browser and system ("Chrome Mobile
    on Android"); ``automated`` marks programs (link previews, mail
    scanners, crawlers), which no person drove.

    The guard fills in the rest before the rules see a use: ``fetcher``, the
    program that fetched (a ``guestguard.guard.signals.Fetcher``: name, kind,
    whether it is expected, whether it means the link is public; None for a
    person); ``where``, the network (a ``guestguard.guard.signals.Network``:
    ``key``, what counts as one network — a carrier's or a company proxy's
    whole pool —, operator, kind, country, city, and ``name`` in words); and
    ``handset``, the device with the browser set aside on phones ("iPhone on
    iOS 18")."""

    id: uuid.UUID
    at: dt.datetime
    kind: str
    outcome: str
    ip: str
    network: str
    device: str
    user_agent: str
    automated: bool
    fetcher: Any = None
    where: Any = None
    handset: str = ""


@dataclass(frozen=True)
class AccessHistory:
    """What a rule knows when it scores ``use``: the same token's other uses
    in the last ``window`` (oldest first, at most a thousand, ``use``
    excluded), the first time a person opened the link (``first_open``, None
    when ``use`` is it; read from the database only if a rule asks), the
    token's state, the plus-ones the guest has said are coming, the
    country of the guest's phone number ("GB"; empty when unknown), the
    workspace's ``sensitivity`` (relaxed, normal or strict: a rule with a
    threshold moves it, see ``guestguard.guard.sensitivity.shifted``), and
    the guest's own devices as learned from all their earlier uses
    (``known_devices``, read only if a rule asks: device names of uses
    before ``window`` that no flag has questioned)."""

    use: AccessUse
    recent: tuple[AccessUse, ...]
    window: dt.timedelta
    link_revoked_at: dt.datetime | None = None
    plus_ones: int = 0
    phone_country: str = ""
    load_first_open: Callable[[], AccessUse | None] = field(default=lambda: None, repr=False, compare=False)
    sensitivity: str = "normal"
    load_known_devices: Callable[[], frozenset[str]] = field(default=frozenset, repr=False, compare=False)

    @functools.cached_property
    def first_open(self) -> AccessUse | None:
        return self.load_first_open()

    @functools.cached_property
    def known_devices(self) -> frozenset[str]:
        return frozenset(self.load_known_devices())

    def since(self, delta: dt.timedelta, *, people_only: bool = True) -> list[AccessUse]:
        """The recent uses within ``delta`` of ``use``, plus ``use`` itself;
        without automated ones unless ``people_only`` is False."""
        start = self.use.at - delta
        uses = [u for u in self.recent if u.at >= start] + [self.use]
        return [u for u in uses if not (people_only and u.automated)]


@dataclass(frozen=True)
class Finding:
    """What a rule found: a score from 1 (faint) to 100 (certain), the
    evidence in words for the host, and details for the API."""

    score: int
    evidence: str
    details: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class AccessRule(Protocol):
    name: str

    def evaluate(self, history: AccessHistory) -> Finding | None:
        """Score ``history.use``: None, or a Finding. An exception is logged
        and the rule skipped for this use."""


@dataclass(frozen=True)
class DomainEvent:
    """A fact about the product, as a ``domain_event`` listener hears it.

    ``id`` is the event's row in the outbox: delivery is at least once, so a
    listener that acts outside GuestGuard's database deduplicates by it.
    ``aggregate`` names what the event is about (``guest:<id>``,
    ``event:<id>``, ``notification:<id>``); events of one aggregate arrive in
    the order they occurred."""

    name: str
    data: Mapping[str, Any]
    workspace_id: uuid.UUID | None = None
    occurred_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    id: uuid.UUID | None = None
    aggregate: str | None = None


class UnreadableFile(Exception):
    """An importer cannot read the file: ``message`` says why in words for
    the host ("Line 12 opens a quoted value that is never closed."), ``code``
    is the machine code of the 422 (``unreadable_file``, ``mixed_encodings``,
    ``too_large``, ...), ``row`` the line or row number as the spreadsheet
    shows it, when there is one."""

    def __init__(self, message: str, code: str = "unreadable_file", row: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.row = row


# Magic numbers of files people upload as a guest list by mistake, in words.
BINARY_KINDS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
                (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a zip archive"),
                (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) or Word document"), (b"\x1f\x8b", "a gzip archive"),
                (b"\x7fELF", "a program"), (b"MZ", "a Windows program"))


def binary_kind(head: bytes) -> str | None:
    """What a binary file is, in words ("a PNG image"), when its first bytes
    say; None for anything else."""
    return next((words for magic, words in BINARY_KINDS if head.startswith(magic)), None)


@dataclass(frozen=True)
class ReadOptions:
    """How to read a file: ``encoding`` and ``delimiter`` the host chose
    (None: detect them), and the limits every importer keeps while it reads
    (``max_cell_chars`` characters per cell: a longer cell is passed on cut
    to ``max_cell_chars + 1`` so the core can name it; ``max_columns``:
    cells past ``max_columns + 1`` may be dropped; ``max_unpacked_bytes``:
    what a compressed format may expand to before it is refused as a
    zip bomb)."""

    encoding: str | None = None
    delimiter: str | None = None
    max_cell_chars: int = 1000
    max_columns: int = 50
    max_unpacked_bytes: int = 50 * 1024 * 1024


@dataclass
class Table:
    """What an importer read: ``rows``, an iterator of rows (each a list of
    text cells, "" for an empty one) produced lazily as the file is parsed,
    row 1 being the file's first line or row; and what it detected, shown to
    the host: ``encoding``, ``delimiter`` (text formats), ``sheet`` (the
    worksheet read)."""

    rows: Iterator[list[str]]
    encoding: str = ""
    delimiter: str = ""
    sheet: str = ""


@runtime_checkable
class Importer(Protocol):
    """A reader of guest-list files (``register_importers``)."""

    name: str                    # "csv", "xlsx": also the export's format name
    label: str                   # in words for the host: "CSV or text file"
    extensions: tuple[str, ...]  # ".csv", ".tsv"
    media_types: tuple[str, ...]

    def recognizes(self, head: bytes) -> bool:
        """Whether the file's first bytes (up to 4 KiB) look like this format."""

    def read(self, data: bytes, options: ReadOptions) -> Table:
        """The file's rows, lazily; raise UnreadableFile naming the problem."""

    # Optional, for the export: ``media_type`` (str) and
    # ``write(rows: Iterable[list[str]]) -> bytes``, the rows as a file of
    # this format (the first row is the header).


# --- the data map (register_privacy_jobs) ---------------------------------------

# Whose data a declaration is: a signed-up user's, a guest's (no account), or
# the people a workspace's own content names (event names, hosts' messages).
SUBJECTS = ("user", "guest", "workspace")


@dataclass(frozen=True)
class PersonalData:
    """Columns of one table that hold personal data, and what happens to them.

    ``category``: what kind of data it is, in a word or two ("contact",
    "identity", "network", "free text", "answers", "file", "reference").
    ``subject``: whose it is (one of ``SUBJECTS``). ``export``: how a copy
    reaches the person (the export file it lands in, or why it is not
    exported). ``erasure``: how it is erased or anonymized, and when.
    """

    table: str
    columns: tuple[str, ...]
    category: str
    subject: str
    export: str
    erasure: str

    def __post_init__(self) -> None:
        if self.subject not in SUBJECTS:
            raise SettingsError(f"personal data of {self.table!r} names an unknown subject "
                                f"{self.subject!r}; one of: {', '.join(SUBJECTS)}")
        if not self.columns:
            raise SettingsError(f"personal data of {self.table!r} names no columns")


@dataclass(frozen=True)
class PrivacyJob:
    """One area's or plugin's part of the data map and of erasure.

    ``name`` is unique. ``data`` declares every personal column the area
    stores. ``forget_guest(ctx, guest)``, when given, erases what the area
    holds about one guest inside the caller's transaction (the guest row
    itself stays, anonymized, so the event's counts stay exact); it must be
    safe to run twice. ``not_personal`` lists ``table.column`` names whose
    name looks personal but whose values are not (``domain_events.name`` is
    an event's kind): reviewed, so the data map's test accepts them.
    """

    name: str
    data: tuple[PersonalData, ...]
    forget_guest: Callable[[Any, Any], None] | None = None
    # ``export_user(ctx, user)`` -> (file name, rows) pairs: the files this
    # job adds to a user's data export, each row a JSON-able dict, read
    # lazily (stream from the database: an account may be large).
    export_user: Callable[[Any, Any], Iterable[tuple[str, Iterable[dict[str, Any]]]]] | None = None
    not_personal: tuple[str, ...] = ()


# --- loading -----------------------------------------------------------------


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


def build_plugin_manager(
    *,
    strict: bool,
    disabled: Iterable[str] = (),
    extra: Iterable[tuple[str, object]] = (),
    load_entry_points: bool = True,
) -> pluggy.PluginManager:
    """Create the manager and register default, third-party and ``extra``
    plugins (the last for tests and embedding)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.guestguard_info = {}  # name -> (distribution, version)
    disabled = set(disabled)

    candidates: list[tuple[str, Callable[[], object], str, str]] = []
    own_version = _version("guestguard")
    for module_name in DEFAULT_PLUGINS:
        candidates.append((module_name, _importer(module_name), "guestguard", own_version))
    if load_entry_points:
        candidates.extend(installed_plugins(tuple(sys.path)))

    for name, load, dist, dist_version in candidates:
        if name in disabled:
            log.info("plugin %s is disabled by plugins.disabled", name)
            continue
        _register(pm, name, load, dist, dist_version, strict)
    for name, plugin in extra:
        pm.register(plugin, name=name)
        pm.guestguard_info[name] = ("(registered in code)", "")
    _check_hook_names(pm, strict)
    return pm


def _check_hook_names(pm: pluggy.PluginManager, strict: bool) -> None:
    """A plugin implementing a hook that does not exist (a misspelling) is
    treated like one that fails to load."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin)
            dist = pm.guestguard_info.get(name, ("?", "?"))[0]
            if strict:
                raise PluginLoadError(f"plugin {name!r} from {dist}: {exc} (plugins.strict is on)") from exc
            log.exception("plugin %s from %s was skipped: %s", name, dist, exc)
            pm.unregister(exc.plugin)
            pm.guestguard_info.pop(name, None)


def _register(pm, name, load, dist, dist_version, strict) -> None:
    try:
        plugin = load()
        pm.register(plugin, name=name)
    except Exception as exc:
        if strict:
            raise PluginLoadError(
                f"plugin {name!r} from {dist} failed to load: {exc!r} "
                "(plugins.strict is on)") from exc
        log.exception("plugin %s from %s failed to load and was skipped: %r", name, dist, exc)
        return
    pm.guestguard_info[name] = (dist, dist_version)


@functools.lru_cache(maxsize=8)
def installed_plugins(search_path: tuple[str, ...]) -> tuple[tuple[str, Callable[[], object], str, str], ...]:
    """The entry points of the distributions installed on ``search_path``
    (name, loader, distribution, version). Reading every distribution's
    metadata is most of the cost of building a plugin manager; what is
    installed changes only with the path searched."""
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.append((ep.name, ep.load, ep.dist.name if ep.dist else "?", ep.dist.version if ep.dist else "?"))
    return tuple(found)


def _importer(module_name: str) -> Callable[[], object]:
    return lambda: importlib.import_module(module_name)


@functools.cache
def _version(dist: str) -> str:
    try:
        return version(dist)
    except Exception:
        return "?"


def describe_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    infos = []
    for name, plugin in pm.list_name_plugin():
        dist, dist_version = pm.guestguard_info.get(name, ("?", "?"))
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()))
        infos.append(PluginInfo(name, dist, dist_version, hooks))
    return sorted(infos, key=lambda info: info.name)


def by_name(items: Iterable[Any], interface: type, what: str, key: str = "name") -> dict[str, Any]:
    """Index what a ``register_*`` hook returned by its ``key`` attribute;
    SettingsError for an item that does not implement ``interface`` or a
    key used twice."""
    indexed: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, interface):
            raise SettingsError(f"{what} {item!r} does not implement {interface.__name__}")
        name = getattr(item, key)
        if name in indexed:
            said = "named" if key == "name" else f"for {key}"
            raise SettingsError(f"two {what}s are {said} {name!r}")
        indexed[name] = item
    return indexed


def chosen(indexed: Mapping[str, Any], setting: str, name: str, what: str) -> Any:
    """The item a setting names; SettingsError naming the setting otherwise."""
    if name not in indexed:
        raise SettingsError(f"setting {setting!r} names an unknown {what} {name!r}; "
                            f"available: {', '.join(sorted(indexed)) or 'none'}")
    return indexed[name]


def collect(hook_results: Iterable[Iterable[Any] | None]) -> list[Any]:
    """Flatten the per-plugin lists a ``register_*`` hook returns."""
    items: list[Any] = []
    for result in hook_results:
        if result:
            items.extend(result)
    return items
