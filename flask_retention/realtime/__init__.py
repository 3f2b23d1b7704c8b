"""The real-time endpoint: the view (``view``), its steps (``endpoint``: body, payload
schema, checks, answer), verification (``verification``), the selector runner
(``runner``), what a selector gets and returns (``choices``), answers and offer signing
(``answers``), the replay guard (``replay``), decisions (``decisions``), and the test
certificate chain and local dev CA that sign like the App Store (``signer``, ``devca``).

May import :mod:`flask_retention.catalogue` and :mod:`flask_retention.core`.
"""
