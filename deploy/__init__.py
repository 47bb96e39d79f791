"""Provisioning: the local stack of real services (`deploy.local`), the demo, and the MWAA
deployment (`deploy.mwaa`)."""
