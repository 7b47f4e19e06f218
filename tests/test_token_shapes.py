"""The token helpers' contract: 256 random bits, URL-safe, shown once and
stored as SHA-256; and the shape check that keeps garbage from reaching the
database (40 to 64 URL-safe characters after the kind's prefix)."""
import hashlib

import pytest

from guestguard.accounts.tokens import hash_token, looks_like_token, matches, new_token


def test_a_new_token_is_256_random_bits_in_url_safe_text_and_its_hash():
    raw, stored = new_token()
    assert len(raw) == 43  # 32 bytes in unpadded base64url
    assert looks_like_token(raw)
    assert stored == hashlib.sha256(raw.encode()).hexdigest() == hash_token(raw)
    assert raw not in stored
    assert new_token()[0] != raw


def test_a_prefixed_token_starts_with_its_prefix_and_nothing_else_does():
    raw, stored = new_token("ggt_")
    assert raw.startswith("ggt_") and len(raw) == 47
    assert stored == hash_token(raw)
    assert looks_like_token(raw, "ggt_")
    assert not new_token()[0].startswith("ggt_")


def test_matching_compares_a_raw_token_with_a_stored_hash():
    raw, stored = new_token()
    assert matches(raw, stored)
    assert not matches(raw + "A", stored)
    assert not matches(stored, stored)


def test_hashing_never_fails_even_for_text_that_is_not_valid_unicode():
    """A path segment that was not UTF-8 reaches us as lone surrogates."""
    assert hash_token("\udc80") == hashlib.sha256(b"\xed\xb2\x80").hexdigest()


@pytest.mark.parametrize("length, ok", [(39, False), (40, True), (43, True), (64, True), (65, False)])
def test_a_token_is_40_to_64_characters(length, ok):
    assert looks_like_token("a" * length) is ok
    assert looks_like_token("ggt_" + "a" * length, "ggt_") is ok, "counted after the prefix"


@pytest.mark.parametrize("raw", [
    "a" * 42 + ".", "a" * 42 + "+", "a" * 42 + "/", "a" * 42 + "=", "a" * 42 + " ", "a" * 42 + "%",
    "a" * 42 + "\x00", "a" * 42 + "\n",
    # Letters and digits of other scripts: not in URL-safe base64.
    "a" * 42 + "é", "a" * 42 + "ß", "a" * 42 + "\u0663", "\uff41" * 43,
])
def test_only_url_safe_characters(raw):
    assert not looks_like_token(raw)


def test_dashes_and_underscores_are_url_safe():
    assert looks_like_token("-" * 20 + "_" * 20)


@pytest.mark.parametrize("raw", [None, 42, b"a" * 43, ["a"] * 43, {"a": 1}])
def test_only_text_is_a_token(raw):
    assert looks_like_token(raw) is False


def test_a_prefixed_kind_needs_its_prefix():
    assert not looks_like_token("a" * 43, "ggt_")
    assert not looks_like_token("ggk_" + "a" * 43, "ggt_")
    assert not looks_like_token("ggt_" + "a" * 60 + "!", "ggt_")
