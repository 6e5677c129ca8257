"""Insights (issue 16): response times, volume, repeats, contributing factors and follow-through over a period.

It reads the other domains' tables and writes only its own roll-up (rollup.py), marked changed by in-transaction
handlers of their events; nothing imports it but the app's wiring (web.py, api.py, jobs.py).
"""
