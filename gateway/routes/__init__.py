"""Thin routes: parse the contract, call the backend port, return the contract.

Routes never see policies or adapters: they receive an ``ErpBackend`` (``erp``) and a
``CallContext`` (``ctx``) as dependencies from the composition root.
"""

from gateway.routes.admin import AdminController
from gateway.routes.availability import AvailabilityController
from gateway.routes.health import HealthController
from gateway.routes.intake import IntakeAdminController, IntakeController
from gateway.routes.orders import OrdersController
from gateway.routes.prices import PricesController
from gateway.routes.returns import ReturnsController
from gateway.routes.shadow import ShadowAdminController

__all__ = ["V1_CONTROLLERS", "AdminController", "HealthController", "IntakeAdminController", "ShadowAdminController"]

V1_CONTROLLERS = [AvailabilityController, PricesController, OrdersController, IntakeController, ReturnsController]
