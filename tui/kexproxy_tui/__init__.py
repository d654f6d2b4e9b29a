"""The Textual dashboard of kexproxy sessions; it consumes core records and never parses bytes."""
