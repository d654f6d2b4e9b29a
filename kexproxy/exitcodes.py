"""Exit statuses, in one place so that scripts can trust them."""

from __future__ import annotations

OK = 0
#: `read --policy`: at least one session violates the policy.
POLICY_VIOLATION = 1
#: `probe`: the server was probed but accepted nothing kexproxy offered.
NOTHING_ACCEPTED = 1
#: `whatif`: the change breaks at least one group of peers that negotiated before.
CHANGE_BREAKS = 1
#: Bad usage, or an input that could not be read (missing file, not a capture).
BAD_INPUT = 2
#: Interrupted by the user (SIGINT), as shells report 128 + 2.
INTERRUPTED = 130
