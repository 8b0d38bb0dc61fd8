"""The RQ jobs of the queue tests, written as an application writes its tasks module: `ops` and the queue are made
at import (in a forking `rq worker` that is each work horse; in the preloading worker, the parent before it forks)."""
import os

import opsux
from redis import Redis
from rq import Queue

from opsux.rq import tracked
from queue_support import body

ops = opsux.connect(os.environ["OPSUX_QUEUE_DB"])
queue = Queue(os.environ["OPSUX_QUEUE_NAME"], connection=Redis.from_url(os.environ["OPSUX_QUEUE_REDIS"]))


@tracked(ops, "inventory.sync", queue=queue)
def work(r, kind, pid_dir=None):
    return body(r, kind, pid_dir)
