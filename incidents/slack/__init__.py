"""The Slack app over HTTP: signed slash commands, interactions and events in; Web API calls out through jobs."""
