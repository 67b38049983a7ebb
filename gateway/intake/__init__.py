"""Order intake: accept the storefront's order at once with its stock held, post it to the ERP
in the background exactly once (``store``: the state port; ``stores``: its adapters)."""
