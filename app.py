"""Chalice application: the composition of the blueprints, no logic.

- `functions.api.routes.api`: the HTTP API (API Gateway + the JWT authorizer).
- `functions.evaluator.handler.evaluator`: `on_conversion_change`, the conversions stream.
- `functions.sender.handler.sender`: `on_delivery_message`, the deliveries queue.

Event handlers live on their blueprints, so their Lambdas import only their own modules
(handler strings `functions.evaluator.handler.on_conversion_change` and
`functions.sender.handler.on_delivery_message`), never this file.
"""

from chalice.app import Chalice

import functions.api.delivery_routes  # noqa: F401  (registers its routes on `api`)
from functions.api.routes import api
from functions.evaluator.handler import evaluator
from functions.sender.handler import sender

app = Chalice(app_name="postbacks")
app.register_blueprint(api)
app.register_blueprint(evaluator)
app.register_blueprint(sender)
