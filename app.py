"""Chalice application: the composition of the blueprints, no logic.

- `functions.api.blueprint.api`: the HTTP API (API Gateway + the JWT authorizer), with the routes
  of `functions.api.routes` and `functions.api.delivery_routes`.
- `functions.evaluator.handler.evaluator`: `on_conversion_change`, the conversions stream.
- `functions.sender.handler.sender`: `on_delivery_message`, the deliveries queue.

`functions.api.methods.complete_routes` then gives every path an OPTIONS route and a 405 route for
the methods it lacks.

Event handlers live on their blueprints, so their Lambdas import only their own modules
(handler strings `functions.evaluator.handler.on_conversion_change` and
`functions.sender.handler.on_delivery_message`), never this file.
"""

from chalice.app import Chalice

import functions.api.delivery_routes
import functions.api.routes  # noqa: F401  (these two modules register their routes on `api`)
from functions.api.blueprint import api
from functions.api.methods import complete_routes
from functions.evaluator.handler import evaluator
from functions.sender.handler import sender

app = Chalice(app_name="postbacks")
app.register_blueprint(api)
app.register_blueprint(evaluator)
app.register_blueprint(sender)
# OPTIONS (CORS preflight) and a 405 problem for every other method, on every path of the API.
complete_routes(app)
