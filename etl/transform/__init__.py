"""Remodel ingested batches into the star schema: pure functions over Arrow tables
(`remodel` and the per-table builders) apart from the S3 adapter in `batch.py`."""
