"""Provisioning: the local stack of real services and (later) AWS/MWAA deployment."""
