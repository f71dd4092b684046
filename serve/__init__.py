"""Serving: request/response schemas, decision policy, review queue store, Ray Serve app, reviewer page."""
