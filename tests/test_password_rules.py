"""The password rules and the password check, called directly at their
edges. test_input_edges.py shows the same rules through sign-up, password
change and login; these run in a moment (the mutation run's checks of the
password helpers, and a developer's while changing them)."""
import pytest

from guestguard.accounts.passwords import MAX_LENGTH, MIN_LENGTH, Passwords, password_problem

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


SHORT = f"must be at least {MIN_LENGTH} characters"
LONG = f"must be at most {MAX_LENGTH} characters"
SPACES = "must not be only spaces"
COMMON = "is one of the most common passwords; choose another"
EMAIL = "must not be your email address"


@pytest.mark.parametrize("password, email, problem", [
    ("x" * 7, "", SHORT), ("x" * 8 + "Q1", "", None), ("k2" * 64, "", None), ("k2" * 64 + "k", "", LONG),
    ("", "", SHORT), (" " * 8, "", SPACES), ("\t \u00a0\u2003" * 2, "", SPACES), (" " * 128, "", SPACES),
    (" " * 129, "", LONG), ("password", "", COMMON), ("PASSWORD", "", COMMON), ("PassWord", "", COMMON),
    ("password!x7", "", None), ("longname@example.com", "LongName@Example.COM", EMAIL),
    ("LONGNAME@EXAMPLE.COM", "longname@example.com", EMAIL), ("longname@example.com", "", None),
    ("xlongname@example.com", "longname@example.com", None), ("correct horse", "other@example.com", None),
])
def test_a_password_is_8_to_128_characters_not_only_spaces_not_common_and_not_the_email(password, email, problem):
    assert password_problem(password, email) == problem


@pytest.fixture(scope="module")
def passwords():
    return Passwords({"passwords.time_cost": 2, "passwords.memory_kib": 19456, "passwords.parallelism": 1})


def test_the_check_takes_the_right_password_only(passwords):
    stored = passwords.hash("correct horse battery staple")
    assert passwords.verify(stored, "correct horse battery staple") is True
    for wrong in ("correct horse battery stapl", "Correct horse battery staple", "", "correct horse battery staple "):
        assert passwords.verify(stored, wrong) is False


def test_a_missing_or_unreadable_hash_refuses_without_failing(passwords):
    assert passwords.verify(None, "anything at all") is False
    assert passwords.verify("", "anything at all") is False
    assert passwords.verify("$argon2id$garbage", "anything at all") is False
    assert passwords.verify("not a hash", "anything at all") is False


def test_no_stored_hash_refuses_even_the_stand_in_hashs_own_password(passwords):
    """An unknown email is checked against a stand-in hash (to take the time a
    wrong password takes): its password logs nobody in."""
    assert passwords.verify(None, "no user has this password") is False
    assert passwords.verify("", "no user has this password") is False
    assert passwords.verify(passwords.dummy_hash, "no user has this password") is True, "the stand-in is a real hash"
