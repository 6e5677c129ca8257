"""The ledger over the API: marshmallow schemas of GET /api/v1/debt (documented in OpenAPI)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class DebtArgsSchema(Schema):
    team = fields.String(metadata={"description": "Team slug or id"})
    service = fields.String(metadata={"description": "Service slug or id"})
    weeks = fields.Integer(validate=validate.Range(1, 104), metadata={"description": "Weeks back, 1 to 104"})
    until = fields.String(metadata={"description": "Last week of the period, YYYY-Www (default: this week)"})


class DebtWeekSchema(Schema):
    week = fields.String(required=True, metadata={"description": "ISO week, YYYY-Www"})
    start = fields.DateTime(required=True)
    opened = fields.Integer(required=True)
    repaid = fields.Integer(required=True)
    written_off = fields.Integer(required=True)
    balance = fields.Integer(required=True, metadata={"description": "Items open at the end of the week"})
    balance_points = fields.Integer(required=True)
    overdue = fields.Integer(required=True)


class DebtOwnerSchema(Schema):
    owner_id = fields.Integer(allow_none=True, required=True)
    name = fields.String(required=True)
    overdue = fields.Integer(required=True)


class DebtAgeSchema(Schema):
    bucket = fields.String(required=True)
    items = fields.Integer(required=True)


class DebtRepeatSchema(Schema):
    incident = fields.String(required=True)
    source = fields.String(required=True)
    open_items = fields.Integer(required=True)
    reasons = fields.List(fields.String(), required=True)
    text = fields.String(required=True)


class DebtWriteOffSchema(Schema):
    id = fields.Integer(required=True)
    title = fields.String(required=True)
    reason = fields.String(required=True)


class DebtSchema(Schema):
    team = fields.String(allow_none=True, required=True)
    service = fields.String(allow_none=True, required=True)
    as_of = fields.DateTime(required=True)
    timezone = fields.String(required=True)
    opened = fields.Integer(required=True)
    repaid = fields.Integer(required=True)
    written_off = fields.Integer(required=True)
    open_items = fields.Integer(required=True)
    open_points = fields.Integer(required=True)
    overdue = fields.Integer(required=True)
    median_age_days = fields.Float(allow_none=True, required=True)
    oldest_age_days = fields.Integer(allow_none=True, required=True)
    repayment_rate = fields.Float(allow_none=True, required=True,
                                  metadata={"description": "Repaid / opened over the last 4 weeks"})
    weeks = fields.List(fields.Nested(DebtWeekSchema), required=True)
    aging = fields.List(fields.Nested(DebtAgeSchema), required=True)
    overdue_by_owner = fields.List(fields.Nested(DebtOwnerSchema), required=True)
    written_off_reasons = fields.List(fields.Nested(DebtWriteOffSchema), required=True)
    repeats = fields.List(fields.Nested(DebtRepeatSchema), required=True)


def ledger_dict(ledger, team, service) -> dict:
    """The ledger as plain data for DebtSchema."""
    oldest = ledger.oldest
    return {
        "team": team.slug if team else None, "service": service.slug if service else None,
        "as_of": ledger.as_of, "timezone": ledger.tz.key,
        "opened": len(ledger.opened), "repaid": len(ledger.repaid), "written_off": len(ledger.written_off),
        "open_items": len(ledger.open_items), "open_points": ledger.open_points, "overdue": len(ledger.overdue),
        "median_age_days": ledger.median_age_days, "oldest_age_days": oldest.age_days(ledger.as_of) if oldest else None,
        "repayment_rate": ledger.repayment_rate(),
        "weeks": [{"week": w.week.label, "start": w.week.start, "opened": len(w.opened), "repaid": len(w.repaid),
                   "written_off": len(w.written_off), "balance": len(w.balance), "balance_points": w.balance_points,
                   "overdue": len(w.overdue)} for w in ledger.weeks],
        "aging": [{"bucket": label, "items": len(rows)} for label, rows in ledger.aging()],
        "overdue_by_owner": [{"owner_id": o.owner_id, "name": o.name, "overdue": len(o.items)}
                             for o in ledger.overdue_by_owner()],
        "written_off_reasons": [{"id": i.id, "title": i.title, "reason": i.wont_do_reason}
                                for i in ledger.written_off_reasons()],
        "repeats": [{"incident": f.incident_ref, "source": f.source_ref, "open_items": f.open_items,
                     "reasons": list(f.reasons), "text": f.text} for f in ledger.repeats],
    }
