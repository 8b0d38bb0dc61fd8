"""The Celery tasks of the queue tests, written as an application writes its tasks module: the README's module-level
`ops = opsux.connect()`, made in the prefork parent before it forks its pool."""
import os

import opsux
from celery import Celery

from opsux.celery import tracked
from queue_support import JOB_TIMEOUT, body

REDIS = os.environ["OPSUX_QUEUE_REDIS"]
app = Celery("opsux_queue_tests", broker=REDIS, backend=REDIS)
app.conf.update(task_default_queue=os.environ["OPSUX_QUEUE_NAME"], worker_prefetch_multiplier=1,
                broker_connection_retry_on_startup=True, task_serializer="json", result_expires=600)

ops = opsux.connect(os.environ["OPSUX_QUEUE_DB"])


@tracked(ops, "inventory.sync", app=app)
def work(r, kind, pid_dir=None):
    return body(r, kind, pid_dir)


@tracked(ops, "inventory.sync", app=app, autoretry_for=(RuntimeError,), max_retries=1, default_retry_delay=0)
def work_retried(r, kind, pid_dir=None):
    return body(r, kind, pid_dir)


@tracked(ops, "inventory.sync", app=app, acks_late=True, reject_on_worker_lost=True)
def work_redelivered(r, kind, pid_dir=None):
    return body(r, kind, pid_dir)


@tracked(ops, "inventory.sync", app=app, time_limit=JOB_TIMEOUT)
def work_timed(r, kind, pid_dir=None):
    return body(r, kind, pid_dir)
