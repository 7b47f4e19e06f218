"""What an RSVP form asks besides yes, no or maybe: the names of the
plus-ones (when the event asks for them) and the host's own questions.

A question is stored on its event as ``{"id", "label", "kind", "required",
"choices"}``: ``kind`` is ``text`` (a short answer), ``choice`` (one of
``choices``) or ``yes_no``. Its ``id`` (8 hex digits) names it in answers
(``{id: text}``), so renaming a question keeps the answers given to it.
Required questions must be answered by a yes or a maybe; a no answers none.
"""
from __future__ import annotations

import secrets
from typing import Any

from guestguard.audit.services import record
from guestguard.events.schemas import CHOICE, MAX_QUESTIONS, TEXT, YES_NO, QuestionInput
from guestguard.events.services import EventsError

KINDS = {TEXT: "Short answer", CHOICE: "One choice from a list", YES_NO: "Yes or no"}

def stored(questions: list[QuestionInput]) -> list[dict[str, Any]]:
    """The questions as the event keeps them, each with an id."""
    seen: set[str] = set()
    kept = []
    for question in questions:
        question_id = question.id if question.id and question.id not in seen else secrets.token_hex(4)
        seen.add(question_id)
        kept.append({"id": question_id, "label": question.label, "kind": question.kind,
                     "required": question.required, "choices": list(question.choices)})
    return kept


def field_name(question: dict[str, Any]) -> str:
    """The question's field in the RSVP form and in error ``fields``."""
    return f"question_{question['id']}"


def check_reply(event, response: str, plus_ones: int, names: list[str],
                answers: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The plus-ones' names and the answers as they are kept, or EventsError
    422 naming every field with a problem. A no keeps neither."""
    if response == "no":
        return [], {}
    problems: dict[str, str] = {}
    kept_names = _names(event, plus_ones, names, problems)
    kept = _answers(event.questions or [], answers, problems)
    if problems:
        raise EventsError(422, "validation_failed", "Some fields are invalid.", fields=problems)
    return kept_names, kept


def _names(event, plus_ones: int, names: list[str], problems: dict[str, str]) -> list[str]:
    if not event.ask_plus_one_names:
        return []
    kept = [name.strip() for name in names][:plus_ones]
    if len(kept) < plus_ones or not all(kept):
        problems["plus_one_names"] = ("needs the name of the guest coming with you" if plus_ones == 1
                                      else "needs the name of each guest coming with you")
    return kept


def _answers(questions: list[dict[str, Any]], answers: dict[str, str], problems: dict[str, str]) -> dict[str, str]:
    known = {question["id"]: question for question in questions}
    for question_id in answers:
        if question_id not in known:
            problems["answers"] = "answers a question this invitation does not ask"
    kept: dict[str, str] = {}
    for question_id, question in known.items():
        given = (answers.get(question_id) or "").strip()
        name = field_name(question)
        if not given:
            if question["required"]:
                problems[name] = "needs an answer"
        elif question["kind"] == CHOICE and given not in question["choices"]:
            problems[name] = "must be one of the choices"
        elif question["kind"] == YES_NO and given not in ("yes", "no"):
            problems[name] = "must be yes or no"
        else:
            kept[question_id] = given
    return kept


def rollup(questions: list[dict[str, Any]], guests) -> list[dict[str, Any]]:
    """Per question, what the guests who said yes or maybe answered: counts
    per choice (and yes/no), or each short answer with its guest's name."""
    summary = []
    for question in questions:
        given = [(guest, (guest.answers or {}).get(question["id"])) for guest in guests
                 if guest.response in ("yes", "maybe")]
        given = [(guest, answer) for guest, answer in given if answer]
        if question["kind"] == TEXT:
            entries = [{"name": guest.name, "answer": answer} for guest, answer in given]
            summary.append({"question": question, "answers": entries, "counts": []})
        else:
            options = question["choices"] if question["kind"] == CHOICE else ["yes", "no"]
            counts = [{"choice": option, "count": sum(1 for _, answer in given if answer == option)}
                      for option in options]
            summary.append({"question": question, "answers": [], "counts": counts})
    return summary


# --- the host's editor ----------------------------------------------------------------


def add_question(ctx, event, data: QuestionInput) -> dict[str, Any]:
    """Add a question at the end; the same question again (a double click,
    a retried form) is not added twice. EventsError 422 past MAX_QUESTIONS."""
    current = list(event.questions or [])
    for question in current:
        if (question["label"], question["kind"]) == (data.label, data.kind):
            return question
    if len(current) >= MAX_QUESTIONS:
        raise EventsError(422, "validation_failed", "Some fields are invalid.",
                          fields={"label": f"cannot be added: an event asks at most {MAX_QUESTIONS} questions"})
    question = stored([data])[0]
    while question["id"] in {other["id"] for other in current}:
        question = stored([data])[0]
    event.questions = [*current, question]  # a new list: the JSON column sees the change
    record(ctx, "event.question_added", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="event", target_id=event.id, question_id=question["id"])
    return question


def remove_question(ctx, event, question_id: str) -> bool:
    """Remove a question (answers already given stay on their answers);
    False when it was not there (removed already)."""
    current = list(event.questions or [])
    kept = [question for question in current if question["id"] != question_id]
    if len(kept) == len(current):
        return False
    event.questions = kept
    record(ctx, "event.question_removed", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="event", target_id=event.id, question_id=question_id)
    return True
