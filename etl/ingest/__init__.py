"""The ingest stage: totesys rows since the bookmarks (or in a window) to CSV in the ingestion bucket.

extract reads the source, watermark keeps the bookmarks, window holds the re-read interval of a
backfill or sweep, build computes what a batch commits from what it extracted (pure), publish
is the commit protocol (files, manifest, state under the lease), and run the entry points.
"""
