"""Route matching that tries only the routes whose pattern could match.

Pyramid's own mapper tries every route's pattern in turn until one matches:
a guest's invitation page, about the hundredth route, paid for a hundred
regular expressions at every request. ``IndexedRoutesMapper`` groups the
routes by the literal first segment of their pattern (``/access/{token}``:
``access``) and tries, in the order they were added, only those whose
first segment is that of the path, with every route whose first segment
is not literal (``/{slug}``, ``/*rest``) among them; and of those, only
the ones whose literal beginning (``/api/v1/rsvp/``) the path starts with
reach their regular expression. The route that matches is the one
Pyramid's mapper would have found: a route skipped could not have
matched, since its pattern starts with text the path does not."""
from __future__ import annotations

import re

from pyramid.exceptions import URLDecodeError
from pyramid.interfaces import IRoutesMapper
from pyramid.urldispatch import RoutesMapper

# A segment holding any of these is matched by a pattern, not literally:
# ``{name}`` and ``*rest`` as Pyramid writes them, ``:name`` its old form.
_NOT_LITERAL = re.compile(r"[{*:]")
_ANY = object()


def literal_start(pattern: str) -> str:
    """What every path a route's pattern matches starts with: its text up
    to the first placeholder, with the leading slash Pyramid gives it."""
    pattern = "/" + pattern.lstrip("/") if not pattern.startswith("/") else pattern
    placeholder = _NOT_LITERAL.search(pattern)
    return pattern if placeholder is None else pattern[:placeholder.start()]


def first_segment(pattern: str) -> object:
    """The literal first segment of a route's pattern ("" for "/"), or
    ``_ANY`` when it holds a placeholder."""
    segment = pattern.lstrip("/").split("/", 1)[0]
    return _ANY if _NOT_LITERAL.search(segment) else segment


class IndexedRoutesMapper(RoutesMapper):
    """Pyramid's ``RoutesMapper`` with its routes grouped by first segment."""

    def __init__(self) -> None:
        super().__init__()
        self._groups: tuple[dict[str, list], list] | None = None

    def connect(self, *args, **kwargs):
        self._groups = None
        return super().connect(*args, **kwargs)

    def _grouped(self) -> tuple[dict[str, list], list]:
        groups = self._groups
        if groups is None:
            keys = [first_segment(route.pattern) for route in self.routelist]
            starts = [(literal_start(route.pattern), route) for route in self.routelist]
            anywhere = [start for start, key in zip(starts, keys, strict=True) if key is _ANY]
            by_segment = {key: [start for start, other in zip(starts, keys, strict=True)
                                if other is _ANY or other == key]
                          for key in set(keys) if key is not _ANY}
            groups = self._groups = (by_segment, anywhere)
        return groups

    def candidates(self, path: str) -> list:
        """The routes that could match ``path``, in the order they were
        added: those of its first segment (with the ones that start with a
        placeholder) whose literal beginning the path has."""
        by_segment, anywhere = self._grouped()
        segment = path.lstrip("/").split("/", 1)[0]
        # A pattern's "$" matches before a final newline too (Python's
        # regular expressions): "/privacy\n" is the privacy page's path.
        group = by_segment.get(segment.removesuffix("\n"), anywhere)
        return [route for start, route in group if path.startswith(start)]

    def __call__(self, request):
        """What ``IRoutesMapper`` answers: the first candidate whose pattern
        matches and whose predicates all agree, as ``{"match", "route"}``."""
        try:
            path = request.path_info or "/"
        except KeyError:  # no PATH_INFO at all: the root, as Pyramid takes it
            path = "/"
        except UnicodeDecodeError as bad:
            raise URLDecodeError(bad.encoding, bad.object, bad.start, bad.end, bad.reason) from bad
        for route in self.candidates(path):
            found = {"match": route.match(path), "route": route}
            if found["match"] is not None and all(agrees(found, request) for agrees in route.predicates):
                return found
        return {"route": None, "match": None}


def use_indexed_routes(config) -> None:
    """Have the configuration's routes kept by ``IndexedRoutesMapper``
    (before any route is added)."""
    config.registry.registerUtility(IndexedRoutesMapper(), IRoutesMapper)
