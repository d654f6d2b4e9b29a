"""Screens of the dashboard: sessions, detail, help, export."""
