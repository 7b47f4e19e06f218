"""The indexed route mapper finds, for any path, the route Pyramid's own
mapper finds, over the application's real routes."""
from __future__ import annotations

import re

import pytest
from pyramid.interfaces import IRoutesMapper
from pyramid.request import Request
from pyramid.urldispatch import RoutesMapper

from guestguard.routing import IndexedRoutesMapper, first_segment, literal_start

pytestmark = pytest.mark.one_pass("sqlite")

PLACEHOLDER = re.compile(r"\{[^}]*\}")


def paths_for(pattern: str) -> list[str]:
    """Paths a pattern matches, and near misses of it."""
    pattern = "/" + pattern.lstrip("/")
    filled = PLACEHOLDER.sub("abc123", pattern)
    filled = re.sub(r"\*\w*$", "some/rest", filled)
    # A pattern's regular expression ends in "$", which Python lets match
    # before a final newline: "/privacy%0A" reaches the privacy page.
    return [filled, filled + "/", filled + "/more", "/" + filled, filled.upper(), filled.rstrip("/") + ".json",
            filled + "\n", filled + "/\n"]


def both_mappers(registry) -> tuple[RoutesMapper, RoutesMapper]:
    indexed = registry.getUtility(IRoutesMapper)
    plain = RoutesMapper()
    for route in indexed.get_routes():
        plain.connect(route.name, route.pattern, route.factory, route.predicates, route.pregenerator)
    return indexed, plain


def test_the_app_uses_the_indexed_mapper(registry):
    assert isinstance(registry.getUtility(IRoutesMapper), IndexedRoutesMapper)


def test_every_path_finds_the_route_pyramid_would(registry):
    indexed, plain = both_mappers(registry)
    paths = {"/", "", "//", "/nothing/here", "//access/abc", "/access", "/api", "/api/v1", "/static/site.css"}
    for route in indexed.get_routes():
        paths.update(paths_for(route.pattern))
    found_some = 0
    for path in sorted(paths):
        for method in ("GET", "POST"):
            request = Request.blank(path or "/", method=method)
            request.registry = registry
            expected, got = plain(request), indexed(request)
            name = expected["route"].name if expected["route"] else None
            assert (got["route"].name if got["route"] else None) == name, path
            assert got["match"] == expected["match"], path
            found_some += name is not None
    assert found_some > len(indexed.get_routes())


def test_a_placeholder_first_segment_is_tried_for_every_path():
    mapper = IndexedRoutesMapper()
    mapper.connect("page", "/pages/{name}")
    mapper.connect("slug", "/{slug}/about")
    mapper.connect("later", "/pages/{name}/about")
    mapper.connect("rest", "*rest")
    for path, name in (("/pages/x", "page"), ("/pages/about", "page"), ("/pages/about/about", "later"),
                       ("/team/about", "slug"), ("/pages/x/y/z", "rest"), ("/", "rest")):
        assert mapper(Request.blank(path))["route"].name == name, path



def test_a_route_added_after_matching_began_is_found():
    mapper = IndexedRoutesMapper()
    mapper.connect("page", "/pages/{name}")
    assert mapper(Request.blank("/team/x"))["route"] is None
    mapper.connect("team", "/team/{name}")
    assert mapper(Request.blank("/team/x"))["route"].name == "team"


def test_first_segments():
    assert first_segment("/access/{token}") == "access"
    assert first_segment("static/*subpath") == "static"
    assert first_segment("/") == ""
    for pattern in ("/{slug}", "*rest", "/:old/x", "/a{b}/c"):
        assert first_segment(pattern) not in ("", "a", "old", "slug")


def test_literal_starts():
    assert literal_start("/api/v1/rsvp/{token}") == "/api/v1/rsvp/"
    assert literal_start("static/*subpath") == "/static/"
    assert literal_start("/privacy") == "/privacy"
    assert literal_start("/:old/x") == "/"
