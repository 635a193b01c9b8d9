"""The HTTP API actor (``api:main``): status, metrics, REST over the store and parser, and
the login pages. See :mod:`actors.api.app`."""

from actors.api.app import ROUTES, ApiActor, create_app

__all__ = ["ROUTES", "ApiActor", "create_app"]
