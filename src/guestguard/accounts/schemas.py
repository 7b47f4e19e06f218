"""Input of the account flows, shared by the JSON API and the web forms, and
the API's answers."""
from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

from guestguard.accounts.passwords import MAX_LENGTH, password_problem
from guestguard.contract import Moment, Out
from guestguard.validation import Input, normalize_email


def _email(value: str) -> str:
    if len(value) > 320:
        raise ValueError("is too long for an email address")
    return normalize_email(value)


def _new_password(value: str) -> str:
    problem = password_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Email = Annotated[str, StringConstraints(min_length=1), AfterValidator(_email)]
# Passwords are taken exactly as typed: no trimming.
NewPassword = Annotated[str, StringConstraints(strip_whitespace=False), AfterValidator(_new_password)]
AnyPassword = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1, max_length=MAX_LENGTH)]
DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# Checked by the CAPTCHA check, not here: a missing, over-long or garbage
# token is a failed CAPTCHA (400), not a malformed body.
CaptchaToken = str


def _accepted(value: bool) -> bool:
    if not value:
        raise ValueError("you must accept the privacy policy and terms")
    return value


class SignupInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "email": "ada@example.com", "password": "correct horse battery staple",
        "display_name": "Ada Lovelace", "accept_policies": True}]})

    email: Email
    password: NewPassword
    display_name: DisplayName
    accept_policies: Annotated[bool, AfterValidator(_accepted)]
    captcha_token: CaptchaToken | None = None

    @field_validator("password")
    @classmethod
    def _not_the_email(cls, value: str, info: ValidationInfo) -> str:
        if value.lower() == str(info.data.get("email", "")).lower():
            raise ValueError("must not be your email address")
        return value


class AcceptPoliciesInput(Input):
    """The policy acceptance page's one checkbox."""
    accept: Annotated[bool, AfterValidator(_accepted)]


class EmailInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "ada@example.com"}]})

    email: Email


class ForgotPasswordInput(EmailInput):
    captcha_token: CaptchaToken | None = None


class TokenInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"token": "k3Jt9QwZ0bV7nR2yL5mX8cF1dH4gS6aP0eU9iO2wQzE"}]})

    token: Token


class LoginInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "email": "ada@example.com", "password": "correct horse battery staple"}]})

    email: Email
    password: AnyPassword
    accept_policies: bool = False


class RefreshInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"refresh_token": "k3Jt9QwZ0bV7nR2yL5mX8cF1dH4gS6aP0eU9iO2wQzE"}]})

    refresh_token: Token


class ResetPasswordInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"token": "k3Jt9QwZ0bV7nR2yL5mX8cF1dH4gS6aP0eU9iO2wQzE", "password": "a new and longer passphrase"}]})

    token: Token
    password: NewPassword


class NewPasswordInput(Input):
    password: NewPassword


class ChangePasswordInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "current_password": "correct horse battery staple", "new_password": "a new and longer passphrase"}]})

    current_password: AnyPassword
    new_password: NewPassword
    end_other_sessions: bool = True


class ProfileInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"display_name": "Ada Lovelace"}]})

    display_name: DisplayName


# --- answers -----------------------------------------------------------------


class UserOut(Out):
    id: uuid.UUID
    email: str
    display_name: str
    role: str
    email_verified: bool = Field(validation_alias="is_verified")
    policies_accepted: bool
    created_at: Moment


class OneUser(Out):
    user: UserOut


class SessionOut(Out):
    id: uuid.UUID
    kind: str
    device: str
    ip: str | None
    created_at: Moment
    last_seen_at: Moment
    expires_at: Moment
    current: bool


class SessionList(Out):
    sessions: list[SessionOut]


class TokensOut(Out):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


class Verified(Out):
    verified: bool


class PasswordChanged(Out):
    message: str
    other_sessions_ended: int
