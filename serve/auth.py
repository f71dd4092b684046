"""API keys with roles (submitter, reviewer, admin) as FastAPI dependencies.

`submitter`, `reviewer` and `admin` are dependencies that yield the caller's name, or answer 401 (no or
unknown key) / 403 (key without the role). Admin implies every role. Keys are compared in constant time. The
key is read with FastAPI's security utilities (`Authorization: Bearer <key>` or `X-API-Key`), so the OpenAPI
document shows both schemes. The Perspective-compatible route also takes `?key=` (`perspective_submitter`), as
Perspective clients send it; no other route does, since a key in a URL ends up in access logs.

The routes are declared once, at module level; which keys are valid is per app: the app provides its
`Authenticator` by overriding the `authenticator` dependency (`app.dependency_overrides`), the ingress from its
replica's settings, a test from its own.
"""

# No `from __future__ import annotations`: FastAPI must see real annotations on the dependencies.

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from .settings import Role, ServeSettings

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the key in an `X-API-Key` header")
QUERY_KEY = "key"  # serve.admission reads it too, to check the key before the body
_query_key = APIKeyQuery(name=QUERY_KEY, auto_error=False,
                         description="the key as `?key=` (Perspective clients; /v1alpha1/comments:analyze only)")


class Authenticator:
    def __init__(self, settings: ServeSettings):
        self.disabled = settings.auth == "disabled"
        self.keys = [(k.key.encode(), k.name, set(k.roles)) for k in settings.api_keys]

    def identify(self, token: str | None) -> tuple[str, set[str]] | None:
        if not token:
            return None
        found = None
        for key, name, roles in self.keys:  # no early exit: timing does not reveal which key matched
            if hmac.compare_digest(key, token.encode()):
                found = (name, roles)
        return found

    def check(self, request: Request, token: str | None, role: Role) -> str:
        """The caller's name if `token` carries `role`; 401 / 403 otherwise (auth disabled: X-Reviewer or local-dev)."""
        if self.disabled:
            return request.headers.get("x-reviewer", "local-dev")
        who = self.identify(token)
        if who is None:
            raise HTTPException(401, "missing or unknown API key (send Authorization: Bearer <key>)",
                                headers={"WWW-Authenticate": "Bearer"})
        name, roles = who
        if role not in roles and "admin" not in roles:
            raise HTTPException(403, f"API key {name!r} lacks the {role!r} role (has {sorted(roles)})")
        return name


def authenticator() -> Authenticator:
    """The app's key check; an app that mounts routes using the role dependencies overrides this."""
    raise RuntimeError("serve.auth.authenticator is not wired: the app must set "
                       "app.dependency_overrides[serve.auth.authenticator]")


def presented_key(bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
                  api_key: Annotated[str | None, Security(_api_key)]) -> str | None:
    return bearer.credentials.strip() if bearer is not None else api_key


def presented_key_or_query(key: Annotated[str | None, Depends(presented_key)],
                           query: Annotated[str | None, Security(_query_key)]) -> str | None:
    return key or query


def require(role: Role, query_key: bool = False):
    """A dependency yielding the caller's name when their key has `role` (see the module docstring);
    `query_key`: also accept the key as `?key=`."""
    key_dependency = presented_key_or_query if query_key else presented_key

    def caller(request: Request, auth: Annotated[Authenticator, Depends(authenticator)],
               token: Annotated[str | None, Depends(key_dependency)]) -> str:
        return auth.check(request, token, role)

    caller.__name__ = f"require_{role}{'_or_query_key' if query_key else ''}"
    return caller


submitter = require("submitter")
reviewer = require("reviewer")
admin = require("admin")
perspective_submitter = require("submitter", query_key=True)
