"""The one definition of every incident duration: the list, the incident page, the post-mortem, the weekly
e-mail and the insights all read them from here, so one incident shows the same figures everywhere.

    time to detect       = detected     - impact start
    time to acknowledge  = acknowledged - detected
    time to mitigate     = mitigated    - impact start
    time to resolve      = resolved     - impact start
    impact duration      = mitigated (or now, while impact goes on) - impact start
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from incidents.database import utcnow


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return max((end - start).total_seconds(), 0.0) if start and end else None


@dataclass(frozen=True)
class Durations:
    """Seconds, or None while the milestone is not reached."""

    time_to_detect: float | None
    time_to_acknowledge: float | None
    time_to_mitigate: float | None
    time_to_resolve: float | None
    impact: float | None
    impact_ongoing: bool

    def rows(self) -> list[dict]:
        """Labelled rows for pages, e-mails and the API, in reading order."""
        return [{"key": key, "label": label, "from": start, "to": end, "seconds": getattr(self, key)}
                for key, label, start, end in _ROWS] + [
            {"key": "impact", "label": "Impact so far" if self.impact_ongoing else "Impact lasted",
             "from": "impact start", "to": "now" if self.impact_ongoing else "mitigation", "seconds": self.impact}]


_ROWS = (("time_to_detect", "Time to detect", "impact start", "detection"),
         ("time_to_acknowledge", "Time to acknowledge", "detection", "acknowledgement"),
         ("time_to_mitigate", "Time to mitigate", "impact start", "mitigation"),
         ("time_to_resolve", "Time to resolve", "impact start", "resolution"))


def durations(incident, now: datetime | None = None) -> Durations:
    """Every duration of one incident (anything with the milestone attributes of `Incident`)."""
    ongoing = incident.mitigated_at is None
    return Durations(
        time_to_detect=_seconds(incident.started_at, incident.detected_at),
        time_to_acknowledge=_seconds(incident.detected_at, incident.acknowledged_at),
        time_to_mitigate=_seconds(incident.started_at, incident.mitigated_at),
        time_to_resolve=_seconds(incident.started_at, incident.resolved_at),
        impact=_seconds(incident.started_at, incident.mitigated_at or now or utcnow()),
        impact_ongoing=ongoing,
    )
