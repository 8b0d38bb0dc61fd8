"""RQ's preloading worker pattern: import the tasks (and so connect to the database) once, then fork a work horse
per job from this parent. `python queue_rq_preload.py [simple]`; `simple` runs rq's SimpleWorker (no fork)."""
import sys

from rq import SimpleWorker, Worker

import queue_rq_tasks  # noqa: F401  (preloaded: ops connects here, before any fork)

if __name__ == "__main__":
    cls = SimpleWorker if sys.argv[1:] == ["simple"] else Worker
    queue_rq_tasks.ops.runs.get(0)  # the parent has used its connection before the first fork
    cls([queue_rq_tasks.queue], connection=queue_rq_tasks.queue.connection).work(logging_level="INFO")
