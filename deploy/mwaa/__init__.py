"""`python -m deploy mwaa`: provision AWS for the pipeline and ship the DAG to Amazon MWAA.

Every step reads what exists, compares it with what should exist and changes only the
difference, so a second run with nothing new changes nothing. `--dry-run` stops after the
comparison and prints the plan.
"""
