"""The privacy pages: the account page's export button and the emailed
download link."""
from __future__ import annotations

from pyramid.response import Response
from pyramid.view import view_config

from guestguard.permissions import ACCOUNT
from guestguard.privacy import exports
from guestguard.web import flash, redirect


@view_config(route_name="account_data_export", request_method="POST", permission=ACCOUNT)
def request_data_export(request):
    user = request.identity.user
    _, new = exports.request_export(request.ctx, user)
    flash(request, f"We are putting together a copy of your data. It will be emailed to {user.email} "
                   "with a link that works once." if new
          else "A copy of your data is already being put together: watch your inbox.")
    return redirect(request, request.route_path("account") + "#privacy-title")


@view_config(route_name="data_export_download", request_method="GET", permission=ACCOUNT)
def download_data_export(request):
    """The emailed link: the archive, once, to its owner signed in."""
    user = request.identity.user
    path = exports.take_download(request.ctx, user, request.matchdict["export_id"], request.matchdict["token"])
    response = Response(app_iter=exports.FileThenDelete(path), content_type="application/zip",
                        content_length=path.stat().st_size)
    name = f"guestguard-data-{path.stat().st_mtime_ns // 10**9}.zip"
    response.content_disposition = f'attachment; filename="{name}"'
    response.cache_control.no_store = True
    response.cache_control.private = True
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
