"""The audit log: an append-only, hash-chained record of security and admin events and of every field change."""
