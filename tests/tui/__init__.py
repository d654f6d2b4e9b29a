"""Tests of the Textual dashboard (tui/kexproxy_tui)."""
