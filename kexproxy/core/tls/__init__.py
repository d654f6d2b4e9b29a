"""TLS handshakes on the same engine as SSH: sans-I/O parsing, fingerprints and certificates."""
