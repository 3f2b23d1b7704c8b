"""Apple's side: the management API client (``client``), its types and errors
(``types``, ``errors``), pacing under Apple's rate limits (``pacing``), sync of the
catalogue (``sync``), going live (``golive``, ``checks``), and the performance test and
its local twin (``performance``, ``simulate``).

May import :mod:`flask_retention.realtime`, :mod:`flask_retention.catalogue` and
:mod:`flask_retention.core`; never :mod:`flask_retention.insights`.
"""
