"""The Celery side of the worker: one segment's stages, run as Celery tasks over the SQS broker.

Read in this order (``video_worker/celery_app.py`` assembles them):

* ``tasks.py``: a task per stage of ``stages.STAGES``, each one's body ``lifecycle.StageLifecycle.run``;
* ``lifecycle.py``: one stage's lifecycle, top to bottom: parse, deadline, run, decide, then retry,
  dead-letter, hand back or continue;
* ``affinity.py``: chain affinity (``ChainAffinity``): the next stages run in the same slot;
* ``dead_letters.py``: what a failure that is given up on becomes, and how it is written;
* ``consumer.py``: the consumer that screens every message before it becomes a task;
* ``context.py``: a process's resources (S3, DynamoDB, the model, the dead-letter store);
* ``app.py``: ``VideoWorkerApp``, the Celery app class that owns the settings and the context;
* ``steps/``: the bootsteps, one per file; ``metrics/``: the Prometheus series, metered adapters, multiprocess
  collection; ``transport.py``: kombu's SQS transport, hardened; ``logs.py``: JSON logs; ``chain.py``: the
  chain callers publish; ``stage_events.py``: task events of the stages chain affinity runs;
* ``upstream.py``: the fence: every private Celery member used, and nowhere else.
"""
