"""Monitoring a served model (issue 14): the retrain rule so far (policy.py)."""
