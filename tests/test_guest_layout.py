"""The guest layout's fixed links: the stylesheet, the icon, the privacy
notice and the terms, by path, under whatever script name the site is
mounted at."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.one_pass("sqlite")

LINKS = ('href="{prefix}/static/site.css"', 'href="{prefix}/static/favicon.svg"',
         'href="{prefix}/privacy"', 'href="{prefix}/terms"')


def test_a_guest_page_links_the_site_by_path(app):
    page = app.get("/access/not-a-token", status=404).text
    for link in LINKS:
        assert link.format(prefix="") in page


def test_each_script_name_gets_its_own_links(app):
    app.get("/access/not-a-token", status=404)
    mounted = app.get("/access/not-a-token", status=404, extra_environ={"SCRIPT_NAME": "/gg"}).text
    for link in LINKS:
        assert link.format(prefix="/gg") in mounted
    again = app.get("/access/not-a-token", status=404).text
    assert 'href="/gg/' not in again
