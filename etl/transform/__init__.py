"""Remodel ingested batches into the star schema: pure functions over Arrow tables
(`remodel` and the per-table builders, `build.py` for a whole batch), reading and
orchestration in `batch.py`, writing in `publish.py` (files, then manifest, then state)."""
