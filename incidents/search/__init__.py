"""Full-text search over incidents and post-mortems: the index (models), the query (services), the in-transaction
subscribers that keep it current (subscribers), the /search page and /api/v1/search. No other domain imports it."""
