"""`python -m kexproxy.schema`: the record's fields as the README's Markdown table."""

from __future__ import annotations

import sys

from kexproxy.schema.fields import markdown_table

sys.stdout.write(markdown_table())
