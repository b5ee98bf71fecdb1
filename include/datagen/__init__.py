"""Synthetic landing data for headrace's reference datasets (seeded, streamed, with planted defects).

Each module generates one dataset's raw files the way an upstream producer would drop them in the
landing zone, plus a summary of every defect it planted, so ingestion tests can assert exact counts.
"""
