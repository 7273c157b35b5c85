"""The Celery side: the app, the stage tasks, chain affinity, the consumer, transport and bootsteps."""
