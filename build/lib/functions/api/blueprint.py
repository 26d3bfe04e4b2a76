"""The API blueprint object, shared by the route modules (`routes`, `delivery_routes`)."""

from chalice.app import Blueprint

api = Blueprint(__name__)
