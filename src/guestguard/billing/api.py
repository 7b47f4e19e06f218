"""The billing API: the workspace's plan and usage, checkout, portal, plan
changes with a proration preview, and cancel at period end (with undo)."""
from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel
from pyramid.view import view_config

from guestguard.billing import services
from guestguard.billing.plans import METERS, PLAN_NAMES
from guestguard.contract import Moment, Out, Refused
from guestguard.permissions import BILLING_MANAGE, WORKSPACE_VIEW
from guestguard.validation import Input

UNAVAILABLE = Refused("billing_unavailable")
NOT_CONFIGURED = "billing_not_configured"
CHECKOUT_REFUSALS = {403: Refused("feature_disabled"), 409: Refused(NOT_CONFIGURED),
                     422: Refused("validation_failed", "billing_refused"), 503: UNAVAILABLE}


class Meter(Out):
    used: int
    limit: int | None


class EventPlan(Out):
    """An event bought on its own plan (Personal): its guests and texts against that plan."""

    event_id: uuid.UUID
    name: str
    plan: str
    guests: Meter
    sms: Meter


class BillingOut(Out):
    plan: str
    status: str
    entitled: bool
    usage: dict[str, Meter]
    branding: bool
    period_start: Moment
    period_end: Moment | None
    trial_end: Moment | None
    cancel_at_period_end: bool
    upgrade_url: str
    events: list[EventPlan]


class PlanInput(Input):
    plan: Literal["personal", "pro", "business"]


class CheckoutInput(PlanInput):
    # The event a one-time plan (Personal) is bought for; required for it, ignored for the others.
    event_id: uuid.UUID | None = None


class CancelInput(Input):
    cancel: bool


class Link(BaseModel):
    """Where to send the browser: ``kind`` checkout, or portal for a
    workspace that already has a subscription."""

    kind: Literal["checkout", "portal"]
    url: str


class PreviewOut(BaseModel):
    plan: str
    direction: Literal["upgrade", "downgrade"]
    amount_due: int
    currency: str


class Applied(BaseModel):
    result: str
    billing: BillingOut


def billing_out(request, workspace_id) -> BillingOut:
    ctx = request.ctx
    st = services.standing(ctx, workspace_id)
    used = services.usage(ctx, workspace_id)
    return BillingOut(plan=st.plan.name, status=st.status, entitled=st.entitled,
                      usage={meter: Meter(**used[meter]) for meter in METERS}, branding=st.branding,
                      period_start=st.period_start, period_end=st.period_end, trial_end=st.trial_end,
                      cancel_at_period_end=st.cancel_at_period_end,
                      upgrade_url=services.upgrade_url(ctx, workspace_id),
                      events=[EventPlan(**found) for found in services.event_plans(ctx, workspace_id)])


def page_urls(request, context) -> tuple[str, str]:
    base = request.registry.settings["app.base_url"].rstrip("/")
    success = base + request.route_path("workspace_billing_success", workspace_id=context.workspace_id)
    # The provider fills in {CHECKOUT_SESSION_ID}; the success page reads that session back.
    return f"{success}?session_id={{CHECKOUT_SESSION_ID}}", base + request.route_path(
        "workspace_billing", workspace_id=context.workspace_id)


@view_config(route_name="api_billing", request_method="GET", renderer="json", permission=WORKSPACE_VIEW,
             response=BillingOut)
def get_billing(context, request):
    """The workspace's plan, status, usage against its limits, period, trial and cancellation."""
    return billing_out(request, context.workspace_id)


@view_config(route_name="api_billing_checkout", request_method="POST", renderer="json",
             permission=BILLING_MANAGE, body=CheckoutInput,
             response={200: Link, **CHECKOUT_REFUSALS, 409: Refused(NOT_CONFIGURED, "already_paid")})
def start_checkout(context, request):
    """A Checkout page for a plan (14-day trial on the first subscription; Personal is paid once for
    the event ``event_id``); a workspace already subscribed gets its portal instead."""
    success, cancel = page_urls(request, context)
    body = request.body_input
    link = services.start_checkout(request.ctx, context.workspace, body.plan, request.identity.user.email,
                                   success, cancel, event_id=body.event_id)
    return Link(**link)


@view_config(route_name="api_billing_portal", request_method="POST", renderer="json",
             permission=BILLING_MANAGE,
             response={200: Link, 409: Refused("no_customer", NOT_CONFIGURED), 503: UNAVAILABLE})
def open_portal(context, request):
    """The billing provider's portal for this workspace (invoices, card, cancellation)."""
    _, back = page_urls(request, context)
    return Link(kind="portal", url=services.open_portal(request.ctx, context.workspace, back))


@view_config(route_name="api_billing_preview", request_method="POST", renderer="json",
             permission=BILLING_MANAGE, body=PlanInput,
             response={200: PreviewOut, **CHECKOUT_REFUSALS, 409: Refused("no_subscription", NOT_CONFIGURED)})
def preview_plan_change(context, request):
    """What changing the subscription to a plan would charge now (prorated); nothing changes."""
    return PreviewOut(**services.preview_change(request.ctx, context.workspace, request.body_input.plan))


@view_config(route_name="api_billing_plan", request_method="POST", renderer="json",
             permission=BILLING_MANAGE, body=PlanInput,
             response={200: Applied, **CHECKOUT_REFUSALS, 409: Refused("no_subscription", NOT_CONFIGURED)})
def change_plan(context, request):
    """Move the subscription to another plan, prorated (see the preview first)."""
    result = services.change_plan(request.ctx, context.workspace, request.body_input.plan)
    return Applied(result=result, billing=billing_out(request, context.workspace_id))


@view_config(route_name="api_billing_cancel", request_method="POST", renderer="json",
             permission=BILLING_MANAGE, body=CancelInput,
             response={200: Applied, **CHECKOUT_REFUSALS, 409: Refused("no_subscription", NOT_CONFIGURED)})
def cancel_subscription(context, request):
    """``cancel: true`` ends the subscription at the end of the period (the plan is kept until
    then); ``cancel: false`` undoes that."""
    result = services.set_cancel(request.ctx, context.workspace, request.body_input.cancel)
    return Applied(result=result, billing=billing_out(request, context.workspace_id))


__all__ = ["PLAN_NAMES"]
