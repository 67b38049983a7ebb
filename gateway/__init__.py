"""erp-gateway: stable, versioned contract endpoints in front of swappable ERP backends."""

__version__ = "0.1.0"
