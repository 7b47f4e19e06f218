"""The billing page for owners: plan, usage bars, trial and renewal dates,
checkout, portal, plan changes with the proration shown first, cancel at
period end with undo, and the refund policy."""
from __future__ import annotations

import uuid

from pyramid.view import view_config

from guestguard.billing import flags, services
from guestguard.billing.api import page_urls
from guestguard.billing.plans import METERS, MONTHLY, PLAN_NAMES
from guestguard.errors import Refusal
from guestguard.permissions import BILLING_MANAGE
from guestguard.web import content_security_policy, redirect
from guestguard.workspaces.views import go, workspace_page

PAGE = "billing/page.jinja2"
METER_LABELS = {"events": "Events this period", "guests": "Guests in your fullest event", "sms": "Text messages"}


def billing_page(request, context, status: int = 200, preview: dict | None = None, error: str | None = None):
    ctx = request.ctx
    st = services.standing(ctx, context.workspace_id)
    used = services.usage(ctx, context.workspace_id)
    meters = []
    for meter in METERS:
        limit, count = used[meter]["limit"], used[meter]["used"]
        meters.append({"name": meter, "label": METER_LABELS[meter], "used": count, "limit": limit,
                       "percent": 0 if not limit else min(100, round(100 * count / limit))})
    known = services.plans(ctx)
    # Its forms send the browser on to the provider's Checkout and portal pages.
    request.response.headers["Content-Security-Policy"] = content_security_policy(
        {"form-action": services.page_origins(ctx)})
    return workspace_page(request, context, "workspace_billing", status, standing=st, meters=meters,
                          event_plans=services.event_plans(ctx, context.workspace_id),
                          events_to_buy=services.events_to_buy(ctx, context.workspace_id),
                          chosen_event=request.params.get("event_id", ""),
                          plans=[known[name] for name in PLAN_NAMES], monthly=MONTHLY, preview=preview,
                          error=error, open=flags.enabled(ctx, "billing", context.workspace_id),
                          has_subscription=bool(st.subscription_id and st.status in services.LIVE))


@view_config(route_name="workspace_billing", request_method="GET", permission=BILLING_MANAGE, renderer=PAGE)
def billing(context, request):
    return billing_page(request, context)


def _plan(request) -> str:
    plan = request.POST.get("plan", "")
    if plan not in PLAN_NAMES:
        raise Refusal(422, "validation_failed", "Choose one of the plans shown.", field="plan")
    return plan


def _event(request) -> uuid.UUID | None:
    given = request.POST.get("event_id", "")
    if not given:
        return None
    try:
        return uuid.UUID(given)
    except ValueError:
        raise Refusal(422, "validation_failed", "Choose one of the events shown.", field="event_id") from None


def _refused(request, context, refusal: Refusal):
    return billing_page(request, context, refusal.status, error=refusal.message)


@view_config(route_name="workspace_billing_checkout", request_method="POST", permission=BILLING_MANAGE,
             renderer=PAGE)
def checkout(context, request):
    success, cancel = page_urls(request, context)
    try:
        link = services.start_checkout(request.ctx, context.workspace, _plan(request), request.identity.user.email,
                                       success, cancel, event_id=_event(request))
    except Refusal as refusal:
        return _refused(request, context, refusal)
    return redirect(request, link["url"])


@view_config(route_name="workspace_billing_success", request_method="GET", permission=BILLING_MANAGE)
def success(context, request):
    session_id = request.GET.get("session_id", "")
    if not session_id or len(session_id) > 255:
        return go(request, "workspace_billing", context)
    note = services.finish_checkout(request.ctx, context.workspace, session_id)
    if note.startswith("applied") and " for event " in note:
        return go(request, "workspace_billing", context, "Thank you: the event has its own plan now.")
    message = "Thank you: your plan is active." if note.startswith("applied") else (
        "Thank you: your payment is being confirmed; this page updates when it is.")
    return go(request, "workspace_billing", context, message)


@view_config(route_name="workspace_billing_portal", request_method="POST", permission=BILLING_MANAGE, renderer=PAGE)
def portal(context, request):
    _, back = page_urls(request, context)
    try:
        return redirect(request, services.open_portal(request.ctx, context.workspace, back))
    except Refusal as refusal:
        return _refused(request, context, refusal)


@view_config(route_name="workspace_billing_change", request_method="POST", permission=BILLING_MANAGE, renderer=PAGE)
def change(context, request):
    """First submit: the proration preview; the confirming submit changes the plan."""
    try:
        plan = _plan(request)
        if request.POST.get("confirm") != "yes":
            return billing_page(request, context, preview=services.preview_change(request.ctx, context.workspace,
                                                                                  plan))
        services.change_plan(request.ctx, context.workspace, plan)
    except Refusal as refusal:
        return _refused(request, context, refusal)
    return go(request, "workspace_billing", context, "Your plan was changed.")


@view_config(route_name="workspace_billing_cancel", request_method="POST", permission=BILLING_MANAGE, renderer=PAGE)
def cancel(context, request):
    cancelling = request.POST.get("cancel") == "yes"
    try:
        services.set_cancel(request.ctx, context.workspace, cancelling)
    except Refusal as refusal:
        return _refused(request, context, refusal)
    return go(request, "workspace_billing", context,
              "Your subscription ends at the end of this period; you keep your plan until then." if cancelling
              else "Your subscription continues: the cancellation was undone.")
