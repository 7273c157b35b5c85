"""The worker's bootsteps, one per file, listed in ``video_worker/celery_app.py`` (``WORKER_STEPS``,
``CONSUMER_STEPS``) next to ``create_app``."""
