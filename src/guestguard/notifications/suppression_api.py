"""The operators' suppression API: list, add and lift, through the same
service as ``guestguard suppression`` and audited like it. Operators are
users whose platform role is ``admin`` (``platform.operate``); API keys and
workspace roles never reach it."""
from __future__ import annotations

from pyramid.view import view_config

from guestguard.contract import Refused
from guestguard.notifications import suppression
from guestguard.notifications.schemas import (
    AlreadyListed,
    Lifted,
    LiftInput,
    OneSuppression,
    SuppressionInput,
    SuppressionList,
    SuppressionOut,
    SuppressionQuery,
)
from guestguard.permissions import PLATFORM_OPERATE


def suppression_out(row) -> SuppressionOut:
    return SuppressionOut.of(row, scope="everywhere" if row.scope == suppression.EVERYWHERE else row.scope,
                             reason_text=suppression.REASONS.get(row.reason, row.reason))


@view_config(route_name="api_suppressions", request_method="GET", renderer="json", permission=PLATFORM_OPERATE,
             query=SuppressionQuery, response={200: SuppressionList, 422: Refused("validation_failed")})
def list_suppressions(request):
    """The suppression list, newest first, by channel and address."""
    query = request.query_input
    rows = suppression.operator_list(request.ctx, channel=query.channel, address=query.address or None,
                                     limit=query.limit)
    return SuppressionList(suppressions=[suppression_out(row) for row in rows])


@view_config(route_name="api_suppressions", request_method="POST", renderer="json", permission=PLATFORM_OPERATE,
             body=SuppressionInput, response={200: AlreadyListed, 201: OneSuppression})
def add_suppression(request):
    """Stop every message to the address on the channel (reason ``operator``);
    adding one already listed answers 200 with the entry there is."""
    data = request.body_input
    row, new = suppression.operator_suppress(request.ctx, data.channel, data.address)
    return (OneSuppression if new else AlreadyListed)(suppression=suppression_out(row))


@view_config(route_name="api_suppressions_lift", request_method="POST", renderer="json",
             permission=PLATFORM_OPERATE, body=LiftInput, response=Lifted)
def lift_suppression(request):
    """Take the address off the list; ``lifted`` says how many entries went
    (0 when it was not listed: lifting twice is harmless)."""
    data = request.body_input
    return Lifted(lifted=suppression.operator_lift(request.ctx, data.channel, data.address,
                                                   workspace_id=data.workspace_id))
