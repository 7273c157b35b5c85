"""The worker's Prometheus metrics (``METRICS_PORT``): what only the worker knows, served over HTTP.

Flower's own ``/metrics`` has the task events (counts, runtimes, workers online);
these add the segments' outcomes, time per stage, retries, time inside the model
(its rate is the accelerator's utilisation), bytes moved and segments held now.

How they are counted:

* Celery's signals (``task_prerun``/``task_postrun``/``task_retry``/``task_success``)
  for every stage, including those chain affinity runs (it runs them through
  Celery's tracer, each with its own task id): the stage histogram, retries,
  skips (a stage that returned ``skipped``);
* the lifecycle's ``segment_entered``/``segment_left`` (``worker/lifecycle.py``):
  the segments in progress (from a segment's first stage in a slot to the last
  one that slot runs for it).
* ``metered.instrument``: the process's ``Dependencies`` and dead-letter store
  wrapped (``worker/context.py``) where no signal can see: a completion row written, a
  dead letter written (by a stage, the consumer or a revoke), seconds inside the
  model's ``run``, bytes of every S3 download and upload.

The series and what counts them are in ``series.py``, the metered adapters in
``metered.py``, the multiprocess collection in ``multiprocess.py``;
``steps/metrics_endpoint.py`` (``MetricsEndpoint``) is the worker bootstep that
turns them on. With the threads
or solo pool they live in the worker process. With prefork (or when the user sets
``PROMETHEUS_MULTIPROC_DIR``) they use prometheus_client's multiprocess mode: each
process writes its own files in ``PROMETHEUS_MULTIPROC_DIR`` (by default
``<scratch dir>/.metrics-<port>``, emptied at start), set before the pool forks; the
HTTP server runs in the worker's main process and adds up its children's files; a
child's live gauge is dropped when it exits (``mark_process_dead``, and at scrape
time for a child that was killed).
"""
