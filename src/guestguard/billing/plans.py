"""Plans, read from settings so operators change limits and prices without
code. A plan's setting is a line of ``key=value`` words:

    billing.plans.pro = events=10 guests=1000 sms=1000 branding=yes billing=monthly

``events`` and ``sms`` count per billing period (a calendar month on Free),
``guests`` per event, ``unlimited`` for no limit. A one-time plan
(``billing=one_time``, Personal) is bought for one event: its ``guests``,
``sms`` and ``branding`` are that event's, and the event stops counting
against the workspace's ``events``. ``billing.plans.<name>.price_ids`` lists the billing provider's price
ids of the plan; the first is the one a checkout uses."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guestguard.settings import Setting, as_bool, as_int, as_list, as_str

FREE, PERSONAL, PRO, BUSINESS = "free", "personal", "pro", "business"
PLAN_NAMES = (FREE, PERSONAL, PRO, BUSINESS)
MONTHLY, ONE_TIME = "monthly", "one_time"
UNLIMITED = None
# The meters a plan limits; guests are counted live per event.
EVENTS, GUESTS, SMS = "events", "guests", "sms"
METERS = (EVENTS, GUESTS, SMS)

DEFAULTS = {
    FREE: "events=1 guests=50 sms=0 branding=no billing=free",
    PERSONAL: "events=1 guests=500 sms=100 branding=yes billing=one_time",
    PRO: "events=10 guests=1000 sms=1000 branding=yes billing=monthly",
    BUSINESS: "events=unlimited guests=5000 sms=5000 branding=yes billing=monthly",
}
DEFAULT_PRICES = {FREE: "", PERSONAL: "price_personal", PRO: "price_pro_monthly", BUSINESS: "price_business_monthly"}
LABELS = {FREE: "Free", PERSONAL: "Personal", PRO: "Pro", BUSINESS: "Business"}
# The order plans rank in: moving right is an upgrade.
RANK = {FREE: 0, PERSONAL: 1, PRO: 2, BUSINESS: 3}


@dataclass(frozen=True)
class Plan:
    name: str
    events: int | None
    guests: int | None
    sms: int | None
    branding: bool
    billing: str  # free, monthly or one_time
    price_ids: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name.title())

    @property
    def price_id(self) -> str:
        return self.price_ids[0] if self.price_ids else ""

    def limit(self, meter: str) -> int | None:
        return getattr(self, meter)


def _count(key: str, value: str) -> int | None:
    if value == "unlimited":
        return UNLIMITED
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{key} must be a whole number or 'unlimited', got {value!r}") from None
    if not 0 <= number <= 10_000_000:
        raise ValueError(f"{key} must be between 0 and 10000000, got {number}")
    return number


def parse_plan(name: str) -> Any:
    def parse(value: str) -> Plan:
        words = dict(word.split("=", 1) if "=" in word else (word, "") for word in value.split())
        unknown = set(words) - {"events", "guests", "sms", "branding", "billing"}
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}; expected events, guests, sms, "
                             "branding, billing")
        missing = {"events", "guests", "sms"} - set(words)
        if missing:
            raise ValueError(f"missing {', '.join(sorted(missing))}")
        billing = words.get("billing", MONTHLY)
        if billing not in ("free", MONTHLY, ONE_TIME):
            raise ValueError(f"billing must be free, monthly or one_time, got {billing!r}")
        return Plan(name, _count("events", words["events"]), _count("guests", words["guests"]),
                    _count("sms", words["sms"]), as_bool(words.get("branding", "no")), billing)
    return parse


SETTINGS: tuple[Setting, ...] = (
    Setting("billing.enforce", as_bool, True,
            "Whether plan limits are enforced (402 plan_limit past them). On in every environment; "
            "switch it off only on purpose."),
    Setting("billing.backend", as_str, "",
            "The billing backend taking payments (a plugin's, e.g. stripe); empty: none, checkout answers 503."),
    Setting("billing.trial_days", as_int(0, 90), 14, "Days of free trial on a workspace's first subscription."),
    Setting("billing.past_due_grace_days", as_int(0, 60), 7,
            "Days a past-due subscription keeps its plan while the provider retries the payment."),
    Setting("billing.upgrade_path", as_str, "/workspaces/{workspace_id}/billing",
            "Where a 402 sends people to upgrade ({workspace_id} is filled in), under app.base_url."),
    Setting("billing.reconcile_minutes", as_int(5, 1440), 60,
            "Minutes between reconciliations of paying workspaces' entitlements with the provider."),
    Setting("flags.defaults", as_list, ("billing",),
            "Feature flags on for every workspace unless a workspace's own row says otherwise."),
    *(Setting(f"billing.plans.{name}", parse_plan(name), parse_plan(name)(DEFAULTS[name]),
              f"Limits of the {LABELS[name]} plan (events=… guests=… sms=… branding=yes|no "
              "billing=free|monthly|one_time).") for name in PLAN_NAMES),
    *(Setting(f"billing.plans.{name}.price_ids", as_list, (DEFAULT_PRICES[name],) if DEFAULT_PRICES[name] else (),
              f"The billing provider's price ids of the {LABELS[name]} plan; the first is sold.")
      for name in PLAN_NAMES),
)


def plans_from(settings: Mapping[str, Any]) -> dict[str, Plan]:
    plans = {}
    for name in PLAN_NAMES:
        plan = settings[f"billing.plans.{name}"]
        plans[name] = Plan(name, plan.events, plan.guests, plan.sms, plan.branding, plan.billing,
                           tuple(settings[f"billing.plans.{name}.price_ids"]))
    return plans


def plan_of_price(plans: Mapping[str, Plan], price_id: str) -> Plan | None:
    return next((plan for plan in plans.values() if price_id and price_id in plan.price_ids), None)
