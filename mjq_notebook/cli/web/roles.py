"""Who is behind a page of ``mjq dashboard`` -- its owner, or a read-only viewer -- known from
the token alone and handed to the page's kernel in a way no request can forge.

Loaded by name inside Voilà's process (``Voila.identity_provider_class`` and
``Voila.authorizer_class``), never imported by mjq itself. The owner's token and the viewer
token (``--viewers``) each log in; the user returned is named by its role, and the signed
login cookie keeps that name, so a viewer who comes back by cookie is still a viewer. On every
request the role and the client's address are written over the ``X-Mjq-Role`` and
``X-Mjq-Client`` headers, whatever the client sent; Voilà copies those two headers into a new
kernel's environment (``VoilaConfiguration.http_header_envs``), where ``Actor.page()`` reads
them. A viewer may only GET the page and its files, and reach only kernels started for a
viewer: the websocket of an owner's kernel is refused (403) even to a viewer who learns its id.
Without a token (``--no-token``, this machine only) everyone is the owner. Tornado's access
log, which prints a refused request's URL, gets the tokens in it scrubbed.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any

from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.identity import PasswordIdentityProvider, User
from tornado import web
from traitlets import Unicode

OWNER, VIEWER = "owner", "viewer"
ROLE_HEADER = "X-Mjq-Role"  # in a kernel's environment as HTTP_X_MJQ_ROLE (audit.ROLE_ENV)
CLIENT_HEADER = "X-Mjq-Client"  # ... and HTTP_X_MJQ_CLIENT
LOGIN_PATHS = ("/login", "/logout")
# the routes that name a kernel (Voilà's and Jupyter Server's): a viewer reaches only its own
KERNEL_PATH = re.compile(r"/(?:api/kernels|voila/api/shutdown|voila/query|voila/execution)/([^/]+)")
TOKEN_IN_URL = re.compile(r"(?<=[?&]token=)[^&\s]+")


def role_of(user: User | None) -> str:
    """The role a user of this server has; anything not plainly the owner is a viewer."""
    return OWNER if user is not None and user.username == OWNER else VIEWER


def _user(role: str) -> User:
    return User(role, name=f"mjq dashboard {role}", display_name=role)


class RolesIdentityProvider(PasswordIdentityProvider):
    """Jupyter Server's token login, with a second token for viewers; each token's user is
    named by its role, and each request's role headers are overwritten."""

    viewer_token = Unicode("", config=True, help="the read-only viewers' token ('' for none)")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        access = logging.getLogger("tornado.access")
        if not any(isinstance(f, NoTokensInLog) for f in access.filters):
            access.addFilter(NoTokensInLog())

    def role_for(self, given: str) -> str | None:
        """The role ``given`` logs in as, or None (compared in constant time)."""
        for role, token in ((OWNER, self.token), (VIEWER, self.viewer_token)):
            if given and token and hmac.compare_digest(given.encode(), token.encode()):
                return role
        return None

    async def get_user_token(self, handler: web.RequestHandler) -> User | None:
        """The user of the token in the URL or ``Authorization`` header: the token says the
        role, never a cookie that came with it."""
        role = self.role_for(self.get_token(handler) or "")
        return None if role is None else _user(role)

    def user_from_cookie(self, cookie_value: str) -> User | None:
        """The user the signed login cookie names, if it is one of ours."""
        user = super().user_from_cookie(cookie_value)
        return user if user is not None and user.username in (OWNER, VIEWER) else None

    def generate_anonymous_user(self, handler: web.RequestHandler) -> User:
        """Without a token (``--no-token``) everyone is the owner."""
        return _user(VIEWER if self.auth_enabled else OWNER)

    def process_login_form(self, handler: web.RequestHandler) -> User | None:
        """The login page: either token, typed as the password (no password is ever set)."""
        if not self.auth_enabled:
            return _user(OWNER)
        role = self.role_for(handler.get_argument("password", default=""))
        return None if role is None else _user(role)

    async def get_user(self, handler: web.RequestHandler) -> User | None:
        """The request's user; its role and address written over the role headers, and a
        viewer's request outside what :class:`RolesAuthorizer` allows refused with 403."""
        user = await self._get_user(handler)
        headers = handler.request.headers
        headers[ROLE_HEADER] = role_of(user) if user is not None else "none"
        headers[CLIENT_HEADER] = handler.request.remote_ip or ""
        if user is not None and role_of(user) != OWNER:
            allows = getattr(handler.settings.get("authorizer"), "allows", None)
            if allows is None or not allows(handler, user):
                handler.current_user = user  # for the 403 page, which reads both names
                handler._jupyter_current_user = user  # type: ignore[attr-defined]  # Jupyter's own
                raise web.HTTPError(403)
        return user


class NoTokensInLog(logging.Filter):
    """Tornado's access log lines, any ``token=`` in a URL scrubbed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                TOKEN_IN_URL.sub("[token]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


class RolesAuthorizer(Authorizer):
    """The owner may do anything; a viewer only what :meth:`allows`."""

    def is_authorized(self, handler: Any, user: User, action: str, resource: str) -> bool:
        return self.allows(handler, user)

    def allows(self, handler: Any, user: User | None) -> bool:
        """True for the owner; for a viewer, a GET (or HEAD) of the page and its files, the
        login and logout pages, and of kernels only those started for a viewer (their
        websocket, their model, and the page's shutting down its own)."""
        if role_of(user) == OWNER:
            return True
        path = "/" + handler.request.path[len(handler.base_url) :].lstrip("/")
        method = handler.request.method
        if path in LOGIN_PATHS:
            return True
        kernel = KERNEL_PATH.match(path)
        named = {kernel.group(1)} if kernel else set()
        named |= {handler.path_kwargs.get("kernel_id")} - {None}  # as the route decoded it
        if named:
            if any(_kernel_role(handler, kernel_id) != VIEWER for kernel_id in named):
                return False
            return method in ("GET", "HEAD") or (
                method == "POST" and path.startswith("/voila/api/shutdown/")
            )
        return method in ("GET", "HEAD") and not path.startswith("/api/")


def _kernel_role(handler: Any, kernel_id: str) -> str | None:
    """The role of the page that started ``kernel_id``, as the kernel manager recorded it."""
    role = getattr(handler.settings.get("kernel_manager"), "role", None)
    return role(kernel_id) if role is not None else None
