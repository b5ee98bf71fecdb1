"""Model monitoring: the baseline of a model version and the drift check of each scored batch.

- ``columns``: which columns are monitored and how (from the dataset spec), and their values;
- ``statistics``: ``statistics.json`` / ``constraints.json`` in the SageMaker Model Monitor format;
- ``thresholds``: the drift thresholds per feature, read from ``<dataset>.monitoring.yaml``;
- ``baseline``: the reference profile, computed once per model version and stored in the lake;
- ``drift``: the drift metrics (PSI, KS, Jensen-Shannon, L-infinity, missing rate, unseen
  categories) of a batch against a baseline, and the verdict;
- ``job``: the drift check as a processing job (off the worker): its plan, and its body, which
  writes ``constraint_violations.json``, the batch's statistics and ``drift_report.json``;
- ``report``: the HTML report with a plot per drifted feature, rendered on the worker from the
  job's ``drift_report.json``;
- ``score_join``: the day's scores lined up with the streamed curated rows on disk, by a hash
  of the key, in memory that does not grow with the day;
- ``streaming``: the statistics of both as merges of per-chunk statistics over Parquet record
  batches (exact order statistics by counting passes), so memory does not grow with rows; an
  in-memory frame is one chunk.

Everything is numpy and pandas (matplotlib for the report's plots, imported when one is drawn);
scipy is only the tests' oracle.
"""
