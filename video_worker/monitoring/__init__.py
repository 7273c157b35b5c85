"""Flower and ``celery inspect``/``control`` over the SQS broker (``MONITORING``, on by default).

Celery needs fanout exchanges for events and remote control; over SQS they are
SNS topics (``transport.py``, extending the worker's transport, with the
remote-control mailbox suited to SQS), and the per-process queues they fan
out into are cleaned up by ``leases.py``; task events leave a worker in
batches (``batching.py``). ``video_worker/celery_app.py`` imports and wires them
(the transport when monitoring is on; with it off the broker is the worker's
plain SQS transport: no SNS topic is created, events and remote control are
off).
"""
