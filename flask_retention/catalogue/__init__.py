"""The message catalogue: its tables (``models``) and their migrations (``schema``,
``migrations``), the store that edits it (``store``, ``entries``), catalogue files and
Apple's rules (``validation``, ``png``), and the request path's in-memory view of it
(``snapshot``, behind the ``lookup`` interface).

May import :mod:`flask_retention.core` only.
"""
