"""Input and answers of the operators' suppression API."""
from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import ConfigDict, StringConstraints

from guestguard.contract import Moment, Out
from guestguard.validation import Input, OneOf, Query, Trimmed, WholeNumber

Channel = Literal["email", "sms"]
Address = Annotated[str, StringConstraints(min_length=1, max_length=320)]


class SuppressionQuery(Query):
    channel: OneOf("email", "sms") | None = None
    address: Annotated[str, Trimmed(320)] = ""
    limit: WholeNumber(1, 500, "must be a whole number from 1 to 500") = 100


class SuppressionInput(Input):
    """An address an operator stops every message to, on one channel."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"channel": "email", "address": "ada@example.com"}]})

    channel: Channel
    address: Address


class LiftInput(SuppressionInput):
    """The address to take off the list: everywhere (bounces, complaints,
    STOP, operators), or one workspace's unsubscribe when ``workspace_id`` is given."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"channel": "sms", "address": "+442079460958"}]})

    workspace_id: uuid.UUID | None = None


class SuppressionOut(Out):
    id: uuid.UUID
    channel: str
    address: str
    # "everywhere", or the id of the one workspace whose guest messages stop.
    scope: str
    reason: str
    reason_text: str
    source: str
    created_at: Moment


class SuppressionList(Out):
    suppressions: list[SuppressionOut]


class OneSuppression(Out):
    suppression: SuppressionOut


class AlreadyListed(OneSuppression):
    """The address was on the list already: the entry there is."""


class Lifted(Out):
    lifted: int
