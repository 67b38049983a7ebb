"""Version 1 of the erp-gateway contract. Published: evolve only by adding defaulted fields."""

from contracts.v1.availability import AvailabilityBatch, AvailabilityBatchRequest, SkuAvailability, WarehouseStock
from contracts.v1.intake import (
    Contact,
    HeldLine,
    IntakeLine,
    IntakeList,
    OrderIntake,
    OrderIntakeRequest,
    ShippingAddress,
    StatusChange,
)
from contracts.v1.orders import (
    Address,
    Customer,
    Order,
    OrderLine,
    OrderList,
    OrderValidation,
    OrderValidationRequest,
    Shipment,
    ShipmentLine,
    ValidationLine,
    ValidationProblem,
)
from contracts.v1.pricing import PriceCheck, PriceCheckLine, PriceCheckRequest, PriceLine, PriceSource, Rounding
from contracts.v1.problems import FieldError, Problem
from contracts.v1.returns import RefundEstimate, ReturnAuthorization, ReturnLine, ReturnRequest, ReturnRequestLine
from contracts.v1.shadow import ShadowDifference, ShadowMismatch, ShadowReport

__all__ = [
    "Address",
    "AvailabilityBatch",
    "AvailabilityBatchRequest",
    "Contact",
    "Customer",
    "FieldError",
    "HeldLine",
    "IntakeLine",
    "IntakeList",
    "Order",
    "OrderIntake",
    "OrderIntakeRequest",
    "OrderLine",
    "OrderList",
    "OrderValidation",
    "OrderValidationRequest",
    "PriceCheck",
    "PriceCheckLine",
    "PriceCheckRequest",
    "PriceLine",
    "PriceSource",
    "Problem",
    "RefundEstimate",
    "ReturnAuthorization",
    "ReturnLine",
    "ReturnRequest",
    "ReturnRequestLine",
    "Rounding",
    "ShadowDifference",
    "ShadowMismatch",
    "ShadowReport",
    "Shipment",
    "ShipmentLine",
    "ShippingAddress",
    "SkuAvailability",
    "StatusChange",
    "ValidationLine",
    "ValidationProblem",
    "WarehouseStock",
]
