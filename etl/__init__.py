"""The totesys pipeline's logic: extract, transform, load. Pure Python, no Airflow import,
so every stage runs and is tested from the command line (`python -m etl`) as well as from
the DAG."""
