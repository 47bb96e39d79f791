"""The totesys simulator: the source database's exact schema, realistic seed data at any
scale, and a clock that changes it the way the real application does (spec/mapping.md)."""
