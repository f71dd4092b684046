"""API keys with roles (submitter, reviewer, admin) as FastAPI dependencies.

`require("reviewer")` returns a dependency that yields the caller's name, or answers 401 (no or unknown
key) / 403 (key without the role). Admin implies every role. Keys are compared in constant time.
"""

# No `from __future__ import annotations`: FastAPI must see real annotations on closures Ray pickles by value.

import hmac

from fastapi import HTTPException, Request

from .settings import ServeSettings


class Authenticator:
    def __init__(self, settings: ServeSettings):
        self.disabled = settings.auth == "disabled"
        self.keys = [(k.key.encode(), k.name, set(k.roles)) for k in settings.api_keys]

    def identify(self, request: Request) -> tuple[str, set[str]] | None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        if not token:
            return None
        found = None
        for key, name, roles in self.keys:  # no early exit: timing does not reveal which key matched
            if hmac.compare_digest(key, token.encode()):
                found = (name, roles)
        return found

    def require(self, role: str):
        def dependency(request: Request) -> str:
            if self.disabled:
                return request.headers.get("x-reviewer", "local-dev")
            who = self.identify(request)
            if who is None:
                raise HTTPException(401, "missing or unknown API key (send Authorization: Bearer <key>)",
                                    headers={"WWW-Authenticate": "Bearer"})
            name, roles = who
            if role not in roles and "admin" not in roles:
                raise HTTPException(403, f"API key {name!r} lacks the {role!r} role (has {sorted(roles)})")
            return name

        return dependency
