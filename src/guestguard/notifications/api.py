"""The workspace's delivery counts per day and channel (DeliveryDay)."""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field
from pyramid.view import view_config
from sqlalchemy import select

from guestguard.contract import Out
from guestguard.db import utcnow
from guestguard.notifications.models import DeliveryDay
from guestguard.permissions import WORKSPACE_VIEW
from guestguard.validation import Query

MAX_DAYS = 366


class DeliveryDaysQuery(Query):
    days: Annotated[int, Field(ge=1, le=MAX_DAYS)] = 30


class DeliveryDayOut(Out):
    day: dt.date
    channel: str
    sent: int
    delivered: int
    bounced: int
    complained: int
    failed: int
    suppressed: int


class DeliveryDays(Out):
    days: list[DeliveryDayOut]


@view_config(route_name="api_workspace_deliveries", request_method="GET", renderer="json",
             permission=WORKSPACE_VIEW, query=DeliveryDaysQuery, response=DeliveryDays)
def delivery_days(context, request):
    """Messages the workspace sent to guests per day (UTC) and channel, by what
    became of them, for the last ``days`` days, newest first."""
    since = utcnow().date() - dt.timedelta(days=request.query_input.days - 1)
    rows = request.db.scalars(select(DeliveryDay).where(
        DeliveryDay.workspace_id == context.workspace_id, DeliveryDay.day >= since)
        .order_by(DeliveryDay.day.desc(), DeliveryDay.channel))
    return DeliveryDays(days=[DeliveryDayOut.of(row) for row in rows])
