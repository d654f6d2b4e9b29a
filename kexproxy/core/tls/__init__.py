"""TLS on the same engine (issue 12): parsing, the record's TLS parts, grades and advice, sans-I/O."""
