"""`/docs`: Swagger UI served from the assets installed with the package (`swagger-ui-bundle`), so the API
documentation works offline and no page of the service loads scripts from a CDN."""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time.

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse

ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


def mount_docs(app: FastAPI) -> None:
    """Add `/docs` and its assets to an app created with `docs_url=None, redoc_url=None`."""
    from swagger_ui_bundle import swagger_ui_path

    folder = Path(swagger_ui_path)

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_asset(name: str):
        if name not in ASSETS:  # only the named files: a name is never joined into a path unchecked
            raise HTTPException(404, f"no docs asset {name!r}")
        return FileResponse(folder / name)


# What any operation may answer besides its own responses: the gate in front of every route
# (serve.admission: 401 before the body, 408 for a slow body, 503 while draining), body limits and overload.
COMMON_RESPONSES = {
    "401": "missing or unknown API key",
    "403": "the key lacks the role this operation needs",
    "408": "the request body did not arrive within body_timeout_s",
    "413": "the body or an image is over its limit, or the request would take longer to score than its deadline "
           "allows at the measured capacity (send fewer or shorter posts)",
    "422": "the request does not match the schema; `detail` names the field",
    "503": "at capacity, past the request's deadline, no scoring replica, the queue unavailable, or shutting "
           "down; retry after `Retry-After` seconds",
}


def complete_openapi(app: FastAPI, schemas: dict[str, dict]) -> None:
    """Make `app.openapi()` document what every operation may answer (COMMON_RESPONSES) and hold every schema
    its hand-written request bodies refer to (`schemas`: name -> JSON schema), so each `$ref` resolves."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in schemas.items():
            components.setdefault(name, schema)
        error = {"application/json": {"schema": {"type": "object", "properties": {"detail": {}}}}}
        for path, operations in document.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for code, description in COMMON_RESPONSES.items():
                    if code in ("401", "403") and not operation.get("security"):
                        continue
                    responses.setdefault(code, {"description": description, "content": error})
                if "requestBody" in operation:
                    responses.setdefault("400", {"description": "the body cannot be parsed (e.g. not UTF-8 JSON)",
                                                 "content": error})
        app.openapi_schema = document
        return document

    app.openapi = openapi
