"""Rate limits. A view opts in with one line, ``rate_limit="<policy>"`` in its
view configuration; every /api/ request also passes a general ceiling. Over
the limit: 429 with ``Retry-After``, the IETF draft ``RateLimit-Policy`` and
``RateLimit`` headers, and the house error body (or a friendly page)."""
from __future__ import annotations

from pyramid.events import NewRequest

from guestguard.errors import APIError, is_api_request
from guestguard.ratelimit.service import Decision, Limiter, Policy, api_keys_of, policies_from


class RateLimited(APIError):
    def __init__(self, decision: Decision):
        seconds = decision.retry_after
        super().__init__(429, "rate_limited",
                         f"Too many requests. Try again in {seconds} second{'s' if seconds != 1 else ''}.",
                         retry_after=seconds)
        self.headers["Retry-After"] = str(seconds)
        self.headers["RateLimit-Policy"] = decision.policy.header
        self.headers["RateLimit"] = f'"{decision.policy.name}";r={decision.remaining};t={seconds}'


# Where a request keeps the decisions it was charged for. pyramid_retry runs
# every attempt of a request on the same WSGI environ, so a replay (after a
# deadlock, say) finds them and is not charged again.
CHARGED = "guestguard.ratelimit.charged"


def charge(request, policy: Policy, key: str, route: str | None, cost: int = 1) -> Decision:
    """Count ``cost`` against ``policy`` for ``key`` once per request, however
    many times the request is attempted."""
    charged: dict[tuple[str, str], Decision] = request.environ.setdefault(CHARGED, {})
    decision = charged.get((policy.name, key))
    if decision is None:
        decision = charged[policy.name, key] = request.registry["ratelimit"].check(policy, key, route, cost)
    return decision


def enforce(request, policy_name: str, cost: int = 1) -> None:
    """Count ``cost`` units (a request, or e.g. the guests it adds) against
    the policy; raise RateLimited when over."""
    policy = request.registry["ratelimit"].policies[policy_name]
    route = request.matched_route.name if request.matched_route else None
    decision = charge(request, policy, policy.key(request), route, cost)
    if not decision.allowed:
        raise RateLimited(decision)


def rate_limit_deriver(view, info):
    """``rate_limit="login"`` (or a tuple of policies) on a view counts each
    call against the policies before the view runs (after its permission
    check)."""
    option = info.options.get("rate_limit")
    if not option:
        return view
    names = (option,) if isinstance(option, str) else tuple(option)
    for name in names:
        if name not in info.registry["ratelimit"].policies:
            raise ValueError(f"unknown rate_limit policy {name!r} on a view")

    def limited(context, request):
        for name in names:
            enforce(request, name)
        return view(context, request)

    return limited


rate_limit_deriver.options = ("rate_limit",)


def api_ceiling(event) -> None:
    request = event.request
    if not is_api_request(request) or request.method == "OPTIONS":
        return
    policy = request.registry["ratelimit"].policies["api"]
    for key in api_keys_of(request):
        decision = charge(request, policy, key, "api")
        if not decision.allowed:
            raise RateLimited(decision)


def includeme(config) -> None:
    settings = config.get_settings()
    config.registry["ratelimit"] = Limiter(settings, policies_from(settings))
    config.add_view_deriver(rate_limit_deriver)
    config.add_subscriber(api_ceiling, NewRequest)
