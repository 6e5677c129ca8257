"""The tech-debt ledger of action items, its dashboard, API and the weekly report e-mail."""
