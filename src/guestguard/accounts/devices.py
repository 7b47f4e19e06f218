"""Readable device names from user-agent strings ("Firefox on Windows"), and
the coarse fingerprint the access log keeps: browser family and system,
whether a program rather than a person fetched the page, and which chat or
social service fetched a link preview.

User agents are read by ua-parser's own Python resolver over its built-in
regexes, not by its default (the Rust ``ua-parser-rs`` when installed): the
Rust one holds some 26 MiB in every process that parses once, the Python one
under 2 MiB. It is slower on a user agent not seen before (about a
millisecond against microseconds), which ``classify`` and the guard's
``handset_of`` keep (4,096 each), and the same browser version on the same
system sends the same string."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from ua_parser import BasicResolver, Parser, Result, load_builtins

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


@functools.cache
def user_agent_parser() -> Parser:
    """The parser, its regexes compiled at the first call (the guard makes
    that call at startup, not in a guest's request)."""
    return Parser(BasicResolver(load_builtins()))


def parse(user_agent: str) -> Result:
    """The browser, system and device ua-parser reads in ``user_agent``."""
    return user_agent_parser().parse(user_agent)


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
