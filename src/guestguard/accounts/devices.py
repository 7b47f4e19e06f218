"""Readable device names from user-agent strings ("Firefox on Windows")."""
from __future__ import annotations

import functools

from ua_parser import parse


@functools.lru_cache(maxsize=1024)
def describe_device(user_agent: str) -> str:
    if not user_agent:
        return "Unknown device"
    result = parse(user_agent)
    browser = result.user_agent.family if result.user_agent else None
    system = result.os.family if result.os else None
    if browser and browser != "Other" and system and system != "Other":
        return f"{browser} on {system}"
    if browser and browser != "Other":
        return browser
    return user_agent[:60]
