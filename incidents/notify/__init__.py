"""Outbound notifications of incident events: Slack incoming webhooks and e-mail to subscribers."""
