"""Each workspace's sensitivity: how readily the rules flag its links.

``normal`` applies the ``guard.*`` thresholds as set. ``relaxed`` asks for
more before a rule fires, ``strict`` for less: every counted threshold
(networks, people, opens, new people after a preview, a program's
fetches) moves by a third of itself, at least one, and never below its
smallest sensible value. The rules that fire on one fact (an old link
used by a stranger, an answer with plus-ones from someone else, a
crawler, a first open abroad) are the same at every sensitivity."""
from __future__ import annotations

from guestguard.audit.services import record
from guestguard.events.services import EventsError

RELAXED, NORMAL, STRICT = "relaxed", "normal", "strict"
SENSITIVITIES = (RELAXED, NORMAL, STRICT)
MEANINGS = {
    RELAXED: "fewer flags: only the clearest sharing (more networks, people or opens before a flag)",
    NORMAL: "the platform's thresholds",
    STRICT: "more flags: earlier warnings, and more of them about ordinary guests",
}


def shifted(threshold: int, sensitivity: str, least: int = 1) -> int:
    """``threshold`` as ``sensitivity`` moves it: a third of it (at least
    one) up when relaxed, down when strict, never below ``least``."""
    step = max(1, round(threshold / 3))
    if sensitivity == RELAXED:
        return threshold + step
    if sensitivity == STRICT:
        return max(least, threshold - step)
    return threshold


def set_sensitivity(ctx, workspace, sensitivity: str) -> bool:
    """Set the workspace's sensitivity; True when it changed. Anything but
    the three words is refused (422), naming them."""
    if sensitivity not in SENSITIVITIES:
        raise EventsError(422, "invalid_sensitivity",
                          f"Sensitivity must be one of {', '.join(SENSITIVITIES)}, not {str(sensitivity)[:40]!r}.")
    if workspace.guard_sensitivity == sensitivity:
        return False
    before, workspace.guard_sensitivity = workspace.guard_sensitivity, sensitivity
    record(ctx, "workspace.guard_sensitivity_set", actor_id=ctx.actor_id, workspace_id=workspace.id,
           target_type="workspace", target_id=workspace.id, sensitivity=sensitivity, previous=before)
    return True
