"""The API blueprint object, shared by the route modules (`routes`, `delivery_routes`).

CORS is its first middleware, so it is the outermost one: its headers reach every response.
"""

from chalice.app import Blueprint

from functions.api.cors import cors_middleware

api = Blueprint(__name__)
api.register_middleware(cors_middleware, "http")
