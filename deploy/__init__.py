"""Deployment to Amazon MWAA (`deploy.mwaa`): buckets, role, secrets, the DAG sync, the
environment and its alarms. The local stack of real services and the demo live in `devstack`."""
