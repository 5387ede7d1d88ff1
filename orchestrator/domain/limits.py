"""Temporal's limits, and the bounds this system keeps under them: one home, imported by
paging (which keeps payloads under them) and by the settings (which may not exceed them).

Temporal refuses a payload over 2 MB and warns from 256 KB; a history over 10 MB or 10,240
events is cut off; one run may have at most 2,000 pending activities, children or signals."""

from __future__ import annotations

PAGE_BYTES = 160 * 1024
"""Snapshot and correlation pages: the accounts' JSON per page, at most."""
BATCH_BYTES = 128 * 1024
"""A batch child's legs and denials (JSON), at most: its report comes back larger (fills,
prices), and must stay under the 256 KB warning too."""
REPORT_BYTES = 192 * 1024
"""Per-account lines a signal's own result holds at most; beyond, they stay in the batches."""
PAYLOAD_LIMIT = 256 * 1024
"""Temporal's warning threshold for one payload: everything above stays well under it."""
HISTORY_EVENTS = 10_240
"""Temporal's warning threshold for one history's events."""
EVENTS_PER_LEG = 32
"""A bound on the events one leg adds to its workflow's history on any path: its delay timer
(2), reservation (3), order (3 to 4), then a cancel (3) or a completion or reroute child (3),
and a workflow task (3) for each of those that wakes the workflow."""
MAX_BATCH_LEGS = 300
"""Legs per workflow at most — inline in the signal's own, or per batch child — whatever
``batch_size`` says: 300 × :data:`EVENTS_PER_LEG` stays under :data:`HISTORY_EVENTS`, and the
pending activities, timers and children of one workflow stay far under 1,000."""
