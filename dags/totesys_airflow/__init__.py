"""Airflow-specific pieces of the totesys pipeline, shipped inside the DAG folder.

- `config`: the DAG's settings, read from `[totesys]` Airflow configuration options
  (environment variables `AIRFLOW__TOTESYS__*`, which is how MWAA passes them);
- `connections`: the pipeline's `Settings` and S3 client built from Airflow connections;
- `alerts`: the failure email (the SMTP provider's `SmtpNotifier`, works on every Airflow 3).
"""
