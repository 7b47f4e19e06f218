"""The privacy pages: the account page's export button and the emailed
download link."""
from __future__ import annotations

from pyramid.httpexceptions import HTTPForbidden
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED, forget
from pyramid.view import view_config

from guestguard.accounts.services import passwords
from guestguard.permissions import ACCOUNT
from guestguard.privacy import deletion, exports
from guestguard.web import flash, private, redirect


@view_config(route_name="account_data_export", request_method="POST", permission=ACCOUNT)
def request_data_export(request):
    user = request.identity.user
    _, new = exports.request_export(request.ctx, user)
    flash(request, f"We are putting together a copy of your data. It will be emailed to {user.email} "
                   "with a link that works once." if new
          else "A copy of your data is already being put together: watch your inbox.")
    return redirect(request, request.route_path("account") + "#privacy-title")


def _person(request):
    """The signed-in person, None for nobody; an API key is refused: an
    export is a person's."""
    identity = request.identity
    if identity is not None and identity.user is None:
        raise HTTPForbidden()
    return identity.user if identity is not None else None


def _file_response(path) -> Response:
    size = path.stat().st_size
    response = Response(app_iter=exports.FileThenDelete(path), content_type="application/zip",
                        content_length=size)
    response.content_disposition = 'attachment; filename="guestguard-data.zip"'
    response.cache_control.no_store = True
    response.cache_control.private = True
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@view_config(route_name="data_export_download", request_method="GET", permission=NO_PERMISSION_REQUIRED,
             renderer="accounts/data_export_password.jinja2")
def download_data_export(request):
    """The emailed link: the archive, once, to its owner signed in. An
    account being deleted cannot sign in: its owner confirms with the
    password instead."""
    export_id, token = request.matchdict["export_id"], request.matchdict["token"]
    user = _person(request)
    if user is not None:
        return _file_response(exports.take_download(request.ctx, user, export_id, token))
    if exports.owner_being_deleted(request.ctx, export_id, token) is None:
        raise HTTPForbidden()  # sign in first, then back here
    private(request)
    return {"errors": {}}


@view_config(route_name="data_export_download", request_method="POST", permission=NO_PERMISSION_REQUIRED,
             renderer="accounts/data_export_password.jinja2", rate_limit="login_ip")
def download_data_export_with_password(request):
    export_id, token = request.matchdict["export_id"], request.matchdict["token"]
    user = _person(request) or exports.owner_being_deleted(request.ctx, export_id, token)
    if user is None:
        raise HTTPForbidden()
    if request.identity is None and not passwords(request.ctx).verify(user.password_hash,
                                                                      request.POST.get("password", "")):
        private(request, 400)
        return {"errors": {"password": "The password is not right."}}
    return _file_response(exports.take_download(request.ctx, user, export_id, token))


@view_config(route_name="account_delete", request_method="POST", permission=ACCOUNT,
             renderer="accounts/account.jinja2")
def delete_account(request):
    from guestguard.accounts.views import account_page

    password = request.POST.get("password", "")
    if not password:
        return account_page(request, 400, deletion={"errors": {"password": "Enter your password."}})
    try:
        user = deletion.delete_account(request.ctx, request.identity.user, password)
    except deletion.DeletionError as error:
        return account_page(request, error.status,
                            deletion={"errors": {"password" if error.field else "form": error.message}})
    forget(request)
    request.session.invalidate()
    flash(request, f"Your account is deleted and you are signed out. We emailed {user.email} a copy of your data "
                   f"and a link to undo this within {request.registry.settings['privacy.deletion_grace_days']} days.")
    return redirect(request, request.route_path("login"))


@view_config(route_name="account_deletion_cancel", request_method="GET", permission=NO_PERMISSION_REQUIRED,
             renderer="accounts/deletion_cancel.jinja2")
def cancel_deletion_page(request):
    private(request)
    valid = deletion.check_cancel_token(request.ctx, request.matchdict["token"])
    if not valid:
        request.response.status = 404
    return {"valid": valid}


@view_config(route_name="account_deletion_cancel", request_method="POST", permission=NO_PERMISSION_REQUIRED,
             renderer="accounts/deletion_cancel.jinja2")
def cancel_deletion(request):
    deletion.cancel_deletion(request.ctx, request.matchdict["token"])
    flash(request, "Your account is back, with its workspaces. Sign in again (API keys of your workspaces "
                   "stayed revoked: make new ones).")
    return redirect(request, request.route_path("login"))
