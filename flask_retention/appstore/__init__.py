"""appstore."""
