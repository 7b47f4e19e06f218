"""Input of the account flows, shared by the JSON API and the web forms."""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints, ValidationInfo, field_validator

from guestguard.accounts.passwords import MAX_LENGTH, password_problem
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
    email: Email


class ForgotPasswordInput(EmailInput):
    captcha_token: CaptchaToken | None = None


class TokenInput(Input):
    token: Token


class LoginInput(Input):
    email: Email
    password: AnyPassword
    accept_policies: bool = False


class RefreshInput(Input):
    refresh_token: Token


class ResetPasswordInput(Input):
    token: Token
    password: NewPassword


class NewPasswordInput(Input):
    password: NewPassword


class ChangePasswordInput(Input):
    current_password: AnyPassword
    new_password: NewPassword
    end_other_sessions: bool = True


class ProfileInput(Input):
    display_name: DisplayName
