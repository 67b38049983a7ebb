"""Settings of the Tryton adapter (``[tryton]`` in TOML, ``ERPGW_TRYTON__*`` in the environment)."""

from __future__ import annotations

from pathlib import Path

import msgspec

__all__ = ["TrytonSettings"]


class TrytonSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Where the Tryton server is, who the gateway logs in as, and how contract codes map to Tryton.

    The password comes from ``password`` (environment) or ``password_file`` (a mounted secret;
    it wins when both are set). It is never part of ``repr`` and never logged.
    """

    #: Base URL of the trytond web server (JSON-RPC is served under ``/<database>/rpc/``).
    url: str = "http://127.0.0.1:8000"
    #: Tryton database name.
    database: str = "tryton"
    #: Tryton login the gateway uses (a dedicated user with sale/stock read and complaint rights).
    user: str = "admin"
    #: Password of that login; prefer ``password_file``.
    password: str = ""
    #: File holding the password (first line); wins over ``password``.
    password_file: str = ""
    #: Language of Tryton's messages (the ``language`` of the context).
    language: str = "en"
    #: Seconds to open a TCP connection to Tryton.
    connect_timeout_seconds: float = 2.0
    #: Seconds to wait for one JSON-RPC answer (the gateway's own read/write timeouts still apply).
    call_timeout_seconds: float = 20.0
    #: Pooled connections to Tryton per worker process.
    max_connections: int = 20
    #: Contract warehouse code -> Tryton warehouse location code, when they differ (default: same code).
    warehouses: dict[str, str] = msgspec.field(default_factory=dict)
    #: ``party.party`` field that holds the contract's customer reference.
    customer_field: str = "code"
    #: Name of the ``sale.complaint.type`` (origin ``sale.sale``) that returns are filed under.
    complaint_type: str = "Return authorization"
    #: Submit and approve the complaint of a return the gateway authorized (else it stays a draft).
    approve_returns: bool = True
    #: Seconds after which a draft complaint, or an unfinished sale, left by an interrupted attempt
    #: is finished by the retry that finds it (younger: another attempt may still be finishing it).
    adopt_drafts_after_seconds: float = 60.0
    #: ``party.party`` (its ``customer_field``) that guest orders, naming no customer, are sold to.
    guest_party: str = "GUEST"
    #: Confirm the sales the gateway creates, so Tryton commits their stock (else they stay quotations).
    confirm_orders: bool = True

    def __repr__(self) -> str:
        return f"TrytonSettings(url={self.url!r}, database={self.database!r}, user={self.user!r}, password=***)"

    def resolve_password(self) -> str:
        """The password from ``password_file`` or ``password``; ``ValueError`` when neither is set."""
        if self.password_file:
            try:
                lines = Path(self.password_file).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ValueError(f"tryton.password_file cannot be read: {exc.strerror}") from exc
            if lines and lines[0]:
                return lines[0]
            raise ValueError("tryton.password_file is empty")
        if self.password:
            return self.password
        raise ValueError("set ERPGW_TRYTON__PASSWORD_FILE (or ERPGW_TRYTON__PASSWORD) for the Tryton backend")
