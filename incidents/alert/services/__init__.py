"""The alert domain's use cases, one module per seam; callers name them as `services.x` from here.

rules: which alerts open an incident. integrations: senders and their tokens. processing: applying one delivery
(the webhook hot path around it is alert/ingestion.py). incident_sync: what an alert's later events do to its
incident. replay: a stored delivery again. queries: the lists, and an incident's alerts.
actions: what a responder does with an alert. Inside this package, modules import each other, never this one.
"""

from incidents.alert.services.actions import attach_alert, open_incident_from_alert
from incidents.alert.services.integrations import (
    MIN_TOKEN_LENGTH,
    TOKEN_PREFIX,
    IntegrationInfo,
    create_integration,
    forget_cached_integrations,
    get_integration,
    hash_token,
    integration_for_token,
    integration_info,
    list_integrations,
    rotate_token,
    update_integration,
    webhook_url,
)
from incidents.alert.services.processing import (
    Duplicate,
    Events,
    Result,
    dedup_key,
    delivery_body,
    events_of,
    first_event,
    ingest,
    lock_key,
    store_delivery,
    stored_keys,
)
from incidents.alert.services.queries import (
    AlertFilter,
    IncidentAlerts,
    get_alert,
    get_delivery,
    incident_alerts,
    list_alerts,
    list_deliveries,
)
from incidents.alert.services.replay import REPLAYABLE, replay_delivery
from incidents.alert.services.rules import (
    ACTIONS,
    Decision,
    decide,
    default_rules,
    match_rules,
    preview_rules,
    validate_rules,
)

__all__ = [
    "ACTIONS", "MIN_TOKEN_LENGTH", "REPLAYABLE", "Decision", "decide", "preview_rules",
    "TOKEN_PREFIX", "AlertFilter", "Duplicate", "Events", "IntegrationInfo",
    "Result", "attach_alert", "create_integration", "dedup_key", "default_rules", "delivery_body", "events_of",
    "first_event", "forget_cached_integrations",
    "IncidentAlerts", "get_alert", "get_delivery", "get_integration", "hash_token", "incident_alerts", "ingest",
    "integration_for_token",
    "integration_info", "list_alerts", "list_deliveries", "list_integrations", "lock_key", "match_rules",
    "open_incident_from_alert", "replay_delivery", "rotate_token", "store_delivery", "stored_keys",
    "update_integration", "validate_rules", "webhook_url",
]
