"""Airflow-specific pieces of the totesys pipeline, shipped inside the DAG folder.

- `config`: the DAG's settings, read from `[totesys]` Airflow configuration options
  (environment variables `AIRFLOW__TOTESYS__*`, which is how MWAA passes them);
- `connections`: the pipeline's `Settings` and S3 client built from Airflow connections;
- `alerts`: the failure email (the SMTP provider's `SmtpNotifier`, works on every Airflow 3);
- `errors`: bad input fails a task at once (no retries), outages are retried;
- `intervals`: a run's mode (incremental, backfill, sweep) and its data interval;
- `assets`: the Airflow Assets ingest, transform and load update (another DAG may
  schedule on "warehouse updated");
- `compat`: names that moved between Airflow 3.0.6 and 3.3.1;
- `rejects_email`: the one email per batch whose rows were set aside.
"""
