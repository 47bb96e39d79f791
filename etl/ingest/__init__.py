"""The ingest stage: totesys rows since the bookmarks (or in a window) to CSV in the ingestion bucket.

extract reads the source, watermark keeps the bookmarks, window holds the re-read interval of a
backfill or sweep, and run is the stage's commit protocol (lease, files, manifest, state).
"""
