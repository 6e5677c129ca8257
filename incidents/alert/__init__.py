"""Alert ingestion: integrations, raw webhook deliveries and deduplicated alerts."""
