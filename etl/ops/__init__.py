"""Operating the pipeline: the full cycle, its monitoring and metrics, and the tools a person
runs against it (status, freshness, reconcile, doctor). Everything here sits above the stages.
"""
