"""ERP backends: the port every ERP is reached through, and one adapter per ERP beside it."""
