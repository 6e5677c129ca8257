"""The insights' roll-up: the unfiltered figures' partial state of one UTC day or one month (rollup.py says how
it is kept and read)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from incidents.database import Base


class InsightsRollup(Base):
    """One day's (`span` "day"), aligned run of days' ("d2".."d16") or month's ("month"; `day` is the first)
    partial figures of the incidents whose impact started in it: all of them, or one team's or service's.
    `version` counts the changes to those incidents since the row was made; a part is current only while
    `state_version` equals it. Each part is JSON (queries.py's Part), read only by the figures using it."""

    __tablename__ = "insights_rollup"

    span: Mapped[str] = mapped_column(sa.String(5), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    facet: Mapped[str] = mapped_column(sa.String(24), primary_key=True)  # rollup.ALL says which
    version: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    state_version: Mapped[int | None] = mapped_column(sa.Integer)
    volume: Mapped[str | None] = mapped_column(sa.Text)
    response: Mapped[str | None] = mapped_column(sa.Text)
    factors: Mapped[str | None] = mapped_column(sa.Text)
    follow: Mapped[str | None] = mapped_column(sa.Text)
