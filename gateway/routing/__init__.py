"""Several backends at once: which one serves each call (``router``), lookups that span an ERP
migration, and shadow reads that compare a second backend's answers (``shadow``)."""
