"""Static Celery policy for the video worker (loaded by ``video_worker.worker.app.VideoWorkerApp``;
``video_worker/celery_app.py`` assembles the app).

Deployment-specific values (broker URL, queue names, concurrency) are not set
here: they come from environment variables through ``video_worker.settings``.
Anything set in this module wins over those defaults.
"""

# JSON only: a pickled message is rejected, never executed.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
event_serializer = "json"

# A task's message is acknowledged after the task finishes; a worker that
# dies mid-task leaves it to be redelivered.
task_acks_late = True
task_reject_on_worker_lost = True

# Results are not stored: completions are DynamoDB rows.
task_ignore_result = True
result_backend = None

# Events and remote control (worker_send_task_events, task_send_sent_event,
# worker_enable_remote_control) follow the MONITORING setting: see
# video_worker.celery_app.celery_conf.

broker_connection_retry_on_startup = True
enable_utc = True
