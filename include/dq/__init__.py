"""Data quality: one rule spec per dataset, compiled for Great Expectations, Deequ and Glue DQ."""
