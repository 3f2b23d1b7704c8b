"""What happened: the decision log (``decision_log``), App Store Server Notifications
(``notifications``), outcomes (``outcomes``), experiments (``experiments``), the
report (``report``), and what the tables store of a subscriber (``privacy``).

May import :mod:`flask_retention.realtime`, :mod:`flask_retention.catalogue` and
:mod:`flask_retention.core`; never :mod:`flask_retention.appstore`.
"""
