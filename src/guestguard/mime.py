"""The MIME form of an outgoing email, for providers that hand a whole
message over (SMTP, Amazon SES's raw send): one way to build it."""
from __future__ import annotations

import datetime as dt
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from guestguard.plugins import OutgoingMessage

# Bodies are sent 7-bit clean (quoted-printable or base64 where needed), so
# non-ASCII text survives servers that do not announce 8BITMIME.
MESSAGE_POLICY = policy.SMTP.clone(cte_type="7bit")


def compose(message: OutgoingMessage, *, fallback_domain: str = "localhost",
            unsubscribe_mailto: str = "") -> EmailMessage:
    """Build the MIME message: text/plain, or multipart/alternative with the
    HTML part when ``message.html`` is set. A message with an
    ``unsubscribe_url`` gets RFC 8058 one-click headers (and a mailto
    alternative when ``unsubscribe_mailto`` names a mailbox someone reads).
    Raises ValueError for header values email cannot carry."""
    email = EmailMessage(policy=MESSAGE_POLICY)
    email["From"] = message.sender
    email["To"] = message.recipient
    email["Subject"] = message.subject
    email["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    # The outbox fixes the Message-ID when the notification is made and hands
    # the same one to every attempt: a message sent twice (its first attempt
    # went out, but the outcome was never recorded) folds into one in mail
    # clients. Without one, a fresh id at the sender's domain (make_msgid's
    # default would do a DNS lookup, socket.getfqdn, on every call).
    if message.message_id:
        email["Message-ID"] = message.message_id
    else:
        domain = parseaddr(message.sender)[1].rpartition("@")[2]
        email["Message-ID"] = make_msgid(domain=domain if domain.isascii() and domain
                                         else fallback_domain)
    email["X-GuestGuard-Notification-Id"] = str(message.notification_id)
    if message.unsubscribe_url:  # RFC 8058 one-click: mail clients POST to it
        targets = [f"<{message.unsubscribe_url}>"]
        if unsubscribe_mailto:
            # The link goes along so whoever reads the mailbox can act on it.
            targets.append(f"<mailto:{unsubscribe_mailto}?subject=unsubscribe"
                           f"&body={quote(message.unsubscribe_url, safe='')}>")
        email["List-Unsubscribe"] = ", ".join(targets)
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if message.reply_to:  # the host's address, for a guest's reply
        email["Reply-To"] = message.reply_to
    email.set_content(message.text)
    if message.html:
        email.add_alternative(message.html, subtype="html")
    return email
