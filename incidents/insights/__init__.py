"""Insights (issue 16): response times, volume, repeats, contributing factors and follow-through over a period.

Read-only: it reads the other domains' tables and nothing imports it but the app's wiring (web.py, api.py).
"""
