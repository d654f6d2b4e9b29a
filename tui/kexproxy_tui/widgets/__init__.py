"""Widgets of the dashboard: the sessions table, the summary bar, the filter input."""
