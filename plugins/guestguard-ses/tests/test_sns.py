"""SNS message verification (guestguard_ses.sns), rule by rule, without a
network: messages signed with a throwaway key as Amazon signs them, the
certificate handed over by an injected fetcher. Fast on purpose: these are
the tests the mutation run uses on the module."""
from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from guestguard_ses import sns
from guestguard_ses.testing import TOPIC, Signer, confirmation, notification, self_signed

CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
NOW = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC)
POLICY = sns.Policy(versions=("1", "2"), topics=(TOPIC,))


@pytest.fixture(scope="module")
def signer():
    return Signer()


class Fetcher:
    """Answers every URL with ``answer`` (or, given a dict, the URL's own
    answer), keeping the URLs asked."""

    def __init__(self, answer):
        self.answer = answer
        self.urls = []

    def __call__(self, url):
        self.urls.append(url)
        return self.answer[url] if isinstance(self.answer, dict) else self.answer


@pytest.fixture
def fetch(signer):
    return Fetcher(signer.certificate)


def event(**options):
    return notification({"eventType": "Delivery", "mail": {"messageId": "m-1"}}, CERT_URL, at=NOW, **options)


def check(message, fetch, policy=POLICY, now=NOW):
    return sns.verify(message, policy, fetch, now)


def refusal(message, fetch, policy=POLICY, now=NOW) -> sns.Refused:
    with pytest.raises(sns.Refused) as refused:
        check(message, fetch, policy, now)
    return refused.value


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("subject", [None, "Amazon SES Email Event Notification"])
def test_a_genuine_notification_is_taken(signer, fetch, version, subject):
    message = signer.sign(event(subject=subject), version)
    assert check(message, fetch) is message
    assert fetch.urls == [CERT_URL]


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
@pytest.mark.parametrize("version", ["1", "2"])
def test_genuine_confirmations_are_taken(signer, fetch, kind, version):
    message = signer.sign(confirmation("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
                                       CERT_URL, kind=kind, at=NOW), version)
    assert check(message, fetch) is message


def test_the_canonical_string_is_what_amazon_documents():
    message = {"Type": "Notification", "MessageId": "id", "TopicArn": "arn", "Subject": "S", "Message": "M",
               "Timestamp": "T", "UnsubscribeURL": "U", "SignatureVersion": "1"}
    assert sns.canonical_string(message) == (
        b"Message\nM\nMessageId\nid\nSubject\nS\nTimestamp\nT\nTopicArn\narn\nType\nNotification\n")
    confirm = {"Type": "SubscriptionConfirmation", "MessageId": "id", "TopicArn": "arn", "Message": "M",
               "Timestamp": "T", "Token": "K", "SubscribeURL": "U"}
    assert sns.canonical_string(confirm) == (b"Message\nM\nMessageId\nid\nSubscribeURL\nU\nTimestamp\nT\n"
                                             b"Token\nK\nTopicArn\narn\nType\nSubscriptionConfirmation\n")
    with pytest.raises(sns.Refused, match="unknown message Type 'Other'") as refused:
        sns.canonical_string({"Type": "Other"})
    assert refused.value.forged is False


@pytest.mark.parametrize("field, value", [
    ("Message", '{"eventType": "Bounce"}'), ("MessageId", "another-id"), ("Subject", "T"),
    ("Timestamp", "2026-12-06T08:59:00.000Z"),
])
def test_a_notification_changed_in_a_signed_field_is_forged(signer, fetch, field, value):
    message = signer.sign(event(subject="S"))
    message[field] = value
    refused = refusal(message, fetch)
    assert refused.forged and str(refused) == "the signature does not match"


@pytest.mark.parametrize("field", ["SubscribeURL", "Token", "Message"])
def test_a_confirmation_changed_in_a_signed_field_is_forged(signer, fetch, field):
    message = signer.sign(confirmation("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
                                       CERT_URL, at=NOW))
    message[field] += "x"
    assert str(refusal(message, fetch)) == "the signature does not match"


def test_a_subject_added_after_signing_is_forged(signer, fetch):
    message = signer.sign(event())
    message["Subject"] = "added"
    assert str(refusal(message, fetch)) == "the signature does not match"


def test_a_field_amazon_does_not_sign_may_differ(signer, fetch):
    message = signer.sign(event())
    message["UnsubscribeURL"] = "https://sns.eu-west-1.amazonaws.com/?other"
    assert check(message, fetch) is message


def test_a_type_changed_after_signing_is_forged(signer, fetch):
    message = signer.sign(confirmation("https://sns.eu-west-1.amazonaws.com/?x", CERT_URL, at=NOW))
    message["Type"] = "UnsubscribeConfirmation"
    assert str(refusal(message, fetch)) == "the signature does not match"


def test_a_signature_by_another_key_is_forged(signer):
    other = Signer()
    refused = refusal(other.sign(event()), Fetcher(signer.certificate))
    assert refused.forged and str(refused) == "the signature does not match"


def test_a_signature_made_with_the_other_version_is_forged(signer, fetch):
    message = signer.sign(event(), "1")
    message["SignatureVersion"] = "2"
    assert str(refusal(message, fetch)) == "the signature does not match"


def test_a_signature_that_is_not_base64_is_forged(signer, fetch):
    message = signer.sign(event())
    message["Signature"] = "not base64!"
    refused = refusal(message, fetch)
    assert refused.forged and str(refused) == "Signature is not base64"


def test_a_certificate_without_an_rsa_key_is_forged(signer):
    certificate = self_signed(ec.generate_private_key(ec.SECP256R1()))
    refused = refusal(signer.sign(event()), Fetcher(certificate))
    assert refused.forged and str(refused) == "the signing certificate has no RSA key"


@pytest.mark.parametrize("accepted, version, taken", [
    (("2",), "1", False), (("2",), "2", True), (("1",), "1", True), (("1",), "2", False), (("1", "2"), "3", False),
])
def test_signature_versions_are_taken_as_settings_say(signer, fetch, accepted, version, taken):
    policy = sns.Policy(versions=accepted, topics=(TOPIC,))
    message = signer.sign(event(), version if version != "3" else "1")
    message["SignatureVersion"] = version
    if taken:
        assert check(message, fetch, policy) is message
    else:
        refused = refusal(message, fetch, policy)
        assert refused.forged and str(refused) == f"SignatureVersion {version!r} is not accepted"
        assert fetch.urls == [], "nothing is fetched for a message refused on sight"


def test_a_topic_not_allowed_is_refused_before_anything_is_fetched(signer, fetch):
    refused = refusal(signer.sign(event(topic="arn:aws:sns:eu-west-1:999999999999:other")), fetch)
    assert refused.forged and str(refused) == "the topic is not one this site subscribed to"
    assert str(refusal(signer.sign(event()), fetch, sns.Policy(topics=()))) == \
        "the topic is not one this site subscribed to"
    assert fetch.urls == []


@pytest.mark.parametrize("age, taken", [
    (dt.timedelta(minutes=59, seconds=59), True), (dt.timedelta(hours=1), True),
    (dt.timedelta(hours=1, seconds=1), False), (dt.timedelta(days=3), False),
    (-dt.timedelta(minutes=5), True), (-dt.timedelta(minutes=5, seconds=1), False),
])
def test_a_message_more_than_an_hour_old_or_from_the_future_is_refused(signer, fetch, age, taken):
    message = signer.sign(notification("{}", CERT_URL, at=NOW - age))
    if taken:
        assert check(message, fetch) is message
        return
    refused = refusal(message, fetch)
    assert refused.forged is False
    assert str(refused) == ("the message is more than an hour old" if age > dt.timedelta(0)
                            else "the message is dated in the future")
    assert fetch.urls == []


@pytest.mark.parametrize("stamp, reason", [
    ("yesterday", "Timestamp is not an ISO 8601 time"),
    ("2026-12-06T09:00:00", "Timestamp has no time zone"),
])
def test_a_timestamp_that_is_not_a_time_is_refused(signer, fetch, stamp, reason):
    message = event()
    message["Timestamp"] = stamp
    refused = refusal(signer.sign(message), fetch)
    assert (str(refused), refused.forged) == (reason, False)


def test_a_timestamp_with_an_offset_is_read_with_it(signer, fetch):
    message = event()
    message["Timestamp"] = "2026-12-06T10:30:00+02:00"  # 08:30 UTC: half an hour old
    assert check(signer.sign(message), fetch)["Timestamp"] == "2026-12-06T10:30:00+02:00"
    assert sns.parse_timestamp("2026-12-06T08:30:00.000Z") == dt.datetime(2026, 12, 6, 8, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize("url, reason", [
    ("http://sns.eu-west-1.amazonaws.com/cert.pem", "SigningCertURL must use https"),
    ("https://sns.us-east-1.amazonaws.com.evil.com/cert.pem", "SigningCertURL is not on an Amazon SNS host"),
    ("https://evil.com/sns.us-east-1.amazonaws.com/cert.pem", "SigningCertURL is not on an Amazon SNS host"),
    ("https://evilsns.us-east-1.amazonaws.com/cert.pem", "SigningCertURL is not on an Amazon SNS host"),
    ("https://sns.us-east-1.amazonaws.comx/cert.pem", "SigningCertURL is not on an Amazon SNS host"),
    ("https://s3.us-east-1.amazonaws.com/cert.pem", "SigningCertURL is not on an Amazon SNS host"),
    ("https://sns.us_east.amazonaws.com/cert.pem", "SigningCertURL is not on an Amazon SNS host"),
    ("https://sns.eu-west-1.amazonaws.com/cert.txt", "SigningCertURL is not a certificate (.pem)"),
    ("https://sns.eu-west-1.amazonaws.com/cert.pem?x.pem", None),
    ("https://u:p@sns.eu-west-1.amazonaws.com/cert.pem", "SigningCertURL must not carry credentials"),
    ("https://u@sns.eu-west-1.amazonaws.com/cert.pem", "SigningCertURL must not carry credentials"),
    ("ftp://sns.eu-west-1.amazonaws.com/cert.pem", "SigningCertURL must use https"),
    ("http://127.0.0.1:8000/cert.pem", "SigningCertURL must use https"),
    ("https://127.0.0.1:8000/cert.pem", "SigningCertURL is not on an Amazon SNS host"),
    ("https://sns.cn-north-1.amazonaws.com.cn/cert.pem", None),
    ("https://SNS.eu-west-1.amazonaws.com/cert.pem", None),
])
def test_only_amazons_https_certificate_urls_are_fetched(signer, fetch, url, reason):
    message = event()
    message["SigningCertURL"] = url
    message = signer.sign(message)
    if reason is None:
        assert check(message, fetch) is message and fetch.urls == [url]
        return
    refused = refusal(message, fetch)
    assert (str(refused), refused.forged) == (reason, True)
    assert fetch.urls == []


def test_a_certificate_url_that_is_not_text_is_refused():
    with pytest.raises(sns.Refused, match="SubscribeURL is not a URL") as refused:
        sns.check_amazon_url(None, POLICY, "SubscribeURL")
    assert refused.value.forged is True


def test_a_url_without_a_host_is_refused_whatever_the_pattern():
    with pytest.raises(sns.Refused, match="not on an Amazon SNS host"):
        sns.check_amazon_url("https:///cert.pem", sns.Policy(hosts=".*"), "SigningCertURL")


def test_a_missing_timestamp_is_refused():
    with pytest.raises(sns.Refused) as refused:
        sns.parse_timestamp(None)
    assert (str(refused.value), refused.value.forged) == ("Timestamp is missing", False)


def test_a_signature_with_characters_outside_base64_is_refused(signer, fetch):
    message = signer.sign(event())
    message["Signature"] += "*"  # a lax decoder would drop it and verify
    assert str(refusal(message, fetch)) == "Signature is not base64"


def test_the_test_policy_takes_plain_http_on_its_own_host_only():
    local = sns.Policy(hosts=r"^127\.0\.0\.1$", allow_http=True)
    assert sns.check_certificate_url("http://127.0.0.1:81/c.pem", local) == "http://127.0.0.1:81/c.pem"
    assert sns.check_certificate_url("https://127.0.0.1:81/c.pem", local) == "https://127.0.0.1:81/c.pem"
    with pytest.raises(sns.Refused, match="not on an Amazon SNS host"):
        sns.check_certificate_url("http://sns.eu-west-1.amazonaws.com/c.pem", local)
    with pytest.raises(sns.Refused, match="must use https"):
        sns.check_certificate_url("ftp://127.0.0.1/c.pem", local)


@pytest.mark.parametrize("field", ["Type", "MessageId", "TopicArn", "Timestamp", "SignatureVersion", "Signature",
                                   "SigningCertURL", "Message"])
def test_a_message_missing_a_field_is_refused_naming_it(signer, fetch, field):
    message = signer.sign(event())
    del message[field]
    refused = refusal(message, fetch)
    assert (str(refused), refused.forged) == (f"{field} is missing", False)


@pytest.mark.parametrize("field", ["SubscribeURL", "Token"])
def test_a_confirmation_missing_a_signed_field_is_refused(signer, fetch, field):
    message = signer.sign(confirmation("https://sns.eu-west-1.amazonaws.com/?x", CERT_URL, at=NOW))
    del message[field]
    assert str(refusal(message, fetch)) == f"{field} is missing"


@pytest.mark.parametrize("value", [None, 7, "", ["x"]])
def test_a_field_that_is_not_text_is_missing(signer, fetch, value):
    message = signer.sign(event())
    message["MessageId"] = value
    assert str(refusal(message, fetch)) == "MessageId is missing"


def test_a_message_field_that_is_not_text_is_refused(signer, fetch):
    message = signer.sign(event())
    message["Message"] = {"eventType": "Delivery"}
    assert str(refusal(message, fetch)) == "Message is missing"


def test_a_subject_that_is_not_text_is_refused(signer, fetch):
    message = signer.sign(event())
    message["Subject"] = 3
    assert (str(refusal(message, fetch)), refusal(message, fetch).forged) == ("Subject is not text", False)


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_a_body_that_is_not_an_object_is_refused(fetch, body):
    refused = refusal(body, fetch)
    assert (str(refused), refused.forged) == ("the body is not a JSON object", False)


def test_an_unknown_type_is_refused(signer, fetch):
    message = signer.sign(event())
    message["Type"] = "Other"
    refused = refusal(message, fetch)
    assert (str(refused), refused.forged) == ("unknown message Type 'Other'", False)


def test_certificates_are_fetched_once_and_the_cache_is_bounded(signer):
    other = Signer()
    pems = Fetcher({"a": signer.pem, "b": other.pem, "c": signer.pem})
    cache = sns.CertificateCache(pems, size=2)
    assert cache("a") == signer.certificate
    assert cache("a") == signer.certificate
    assert cache("b") == other.certificate
    assert pems.urls == ["a", "b"]
    cache("a")  # "a" used last: "b" is the one to go
    cache("c")
    assert pems.urls == ["a", "b", "c"]
    cache("a")
    assert pems.urls == ["a", "b", "c"], "a is still kept"
    cache("b")
    assert pems.urls == ["a", "b", "c", "b"], "b was dropped when c came"
    assert len(cache._certificates) == 2


def test_sixteen_certificates_are_kept_by_default(signer):
    pems = Fetcher(signer.pem)
    cache = sns.CertificateCache(pems)
    for index in range(17):
        cache(str(index))
    cache("1")
    assert pems.urls.count("1") == 1
    cache("0")
    assert pems.urls.count("0") == 2, "the 17th pushed out the least recently used"


def test_a_certificate_url_serving_something_else_is_unavailable():
    cache = sns.CertificateCache(Fetcher(b"<html>maintenance</html>"))
    with pytest.raises(sns.CertificateUnavailable, match="x did not serve a PEM certificate"):
        cache("x")
    assert len(cache._certificates) == 0
