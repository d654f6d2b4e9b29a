"""The sans-I/O core: bytes in, events and session records out; no sockets, no clocks, no files."""
