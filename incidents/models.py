"""Imports every domain's models so the metadata is complete (for migrations and the shell).

Then configures the mappers: relationships a higher domain adds to a lower one's model by backref
(`Postmortem.action_items`, `ActionItem.export`) exist as class attributes from here on, so queries may name them.
"""

from sqlalchemy.orm import configure_mappers

from incidents.action_item.models import ActionItem  # noqa: F401
from incidents.alert.models import Alert, Delivery, Integration  # noqa: F401
from incidents.audit.models import AuditEntry  # noqa: F401
from incidents.auth.models import ApiToken, Invitation, LoginAttempt, User  # noqa: F401
from incidents.catalog.models import Service, Team  # noqa: F401
from incidents.incident.models import Incident, IncidentTag, TimelineEntry  # noqa: F401
from incidents.insights.models import InsightsRollup  # noqa: F401
from incidents.notify.models import NotificationLog, Subscription  # noqa: F401
from incidents.postmortem.models import (  # noqa: F401
    BlamelessPhrase,
    ContributingFactor,
    FactorCategory,
    Participant,
    Postmortem,
    PostmortemEvent,
    PostmortemSection,
    PostmortemTemplate,
    ReviewComment,
    SectionRevision,
)
from incidents.report.models import ReportRecipient  # noqa: F401
from incidents.search.models import SearchDocument  # noqa: F401
from incidents.slack.models import SlackChannel, SlackInbound, SlackOutbox  # noqa: F401
from incidents.tracker.models import ShortcutDelivery, ShortcutExport, ShortcutSettings  # noqa: F401

configure_mappers()
