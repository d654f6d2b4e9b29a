"""Sinks take finished session records somewhere: JSON lines, the console, an SQLite store."""
