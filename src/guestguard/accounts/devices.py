"""Readable device names from user-agent strings ("Firefox on Windows"), and
the coarse fingerprint the access log keeps: browser family and system,
whether a program rather than a person fetched the page, and which chat or
social service fetched a link preview."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from ua_parser import parse

# Substrings of the user agents link-preview fetchers send, and the service
# each one reveals the link was pasted into.
PREVIEWERS = (
    ("slackbot", "Slack"),
    ("slack-imgproxy", "Slack"),
    ("discordbot", "Discord"),
    ("telegrambot", "Telegram"),
    ("whatsapp", "WhatsApp"),
    ("facebookexternalhit", "Facebook or Messenger"),
    ("facebot", "Facebook"),
    ("twitterbot", "X (Twitter)"),
    ("linkedinbot", "LinkedIn"),
    ("skypeuripreview", "Skype or Teams"),
    ("microsoft teams", "Microsoft Teams"),
    ("redditbot", "Reddit"),
    ("pinterest", "Pinterest"),
    ("mastodon", "Mastodon"),
    ("viber", "Viber"),
    ("snapchat", "Snapchat"),
)
IMESSAGE = "iMessage"
AUTOMATED_HINTS = ("bot", "spider", "crawl", "preview", "curl/", "wget/", "python-requests", "headless")


@dataclass(frozen=True)
class Device:
    name: str               # "Chrome Mobile on Android"
    automated: bool         # a crawler, scanner or preview fetcher
    previewer: str | None   # the chat or social service behind a preview fetch


@functools.lru_cache(maxsize=4096)
def classify(user_agent: str) -> Device:
    if not user_agent:
        return Device("Unknown device", False, None)
    lowered = user_agent.lower()
    if "facebookexternalhit" in lowered and "twitterbot" in lowered:
        previewer = IMESSAGE  # Apple's Messages sends both names
    else:
        previewer = next((service for needle, service in PREVIEWERS if needle in lowered), None)
    result = parse(user_agent)
    browser = result.user_agent.family if result.user_agent else "Other"
    system = result.os.family if result.os else "Other"
    automated = (previewer is not None or (result.device is not None and result.device.family == "Spider")
                 or any(hint in lowered for hint in AUTOMATED_HINTS))
    if browser != "Other" and system != "Other":
        name = f"{browser} on {system}"
    elif browser != "Other":
        name = browser
    else:
        name = user_agent[:60]
    return Device(name[:120], automated, previewer)


def describe_device(user_agent: str) -> str:
    return classify(user_agent).name
