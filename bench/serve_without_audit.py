"""`incidents serve` with the audit log's subscribers taken out of the events registry: the B side of the
ingestion benchmark's audit A/B (`python -m bench.ingest --target app --audit-ab`, issue 17).

    python -m bench.serve_without_audit serve --port 5000      # any `incidents` command line

Everything else is the real command: migrations, gunicorn with serve's settings, its job worker. Only the app
that gunicorn's workers load (serve's `create_app`) has no `audit.recording.record` handler, so no change an
alert makes writes an audit row. Never for production: the audit log is a requirement there.
"""

from __future__ import annotations

import os

from incidents import cli, events
from incidents.audit import recording
from incidents.search import subscribers as search

_create_app = cli.create_app
# BENCH_WITHOUT=audit,search also drops the search index's subscribers (issue 16: index maintenance's share).
_DROPPED = {"audit": (recording.record,),
            "search": (search.index_incident, search.index_postmortem, search.index_action_item)}


def create_app_without_audit(*args, **kwargs):
    """The real app, minus the in-transaction audit subscriber of every event (and what BENCH_WITHOUT names)."""
    app = _create_app(*args, **kwargs)
    dropped = {h for name in os.environ.get("BENCH_WITHOUT", "audit").split(",") for h in _DROPPED[name.strip()]}
    registry = events.registry(app)
    for name, subs in registry.subscribers.items():
        registry.subscribers[name] = [s for s in subs if s.handler not in dropped]
    return app


cli.create_app = create_app_without_audit  # what serve's gunicorn application loads in its workers

if __name__ == "__main__":
    cli.main()
