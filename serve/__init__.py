"""The moderation service: Ray Serve deployments, the HTTP API, the reviewer page, and the service's database.

    app.py          build_app(args): the production application, built in one place (serve deploy, moderation serve)
    local.py        run_service(...): what `moderation serve` runs (settings, local Ray, Serve, clean shutdown)
    scorer.py       the Scorer deployment (batched model calls)
    ingress.py      the HTTP ingress deployment and its FastAPI app
    admission.py    in front of every route: liveness, the key before the body, the body deadline, draining
    probes.py       /readyz as its own small application (503 "starting" while the model loads)
    docs.py         /docs from the installed Swagger UI assets; the OpenAPI document's common responses
    service.py      per request: score, decide (moderation.policy), queue, log, count
    requests.py     reading a request: size limits, JSON / multipart, per-post and image checks
    metrics.py      Prometheus metrics
    settings.py     ServeSettings (pydantic-settings; YAML file + MODERATION_* environment)
    auth.py         API keys with roles
    schemas.py      moderation API bodies; review_models.py / review_api.py: the reviewer API and page
    db/             review queue, prediction log, schema, Alembic migrations (SQLite / PostgreSQL)
    bulk.py         bulk scoring with Ray Data
"""
