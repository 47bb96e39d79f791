"""Load processed batches into a prepared Postgres warehouse, exactly once."""
