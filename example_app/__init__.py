"""A small subscription backend that uses flask-retention (see ``app.py``)."""
