"""The anchors for the HTTP enqueue benchmark (http.sh): how fast Celery's and Huey's
clients enqueue on one thread, against the Redis on this machine.

    pip install celery huey redis
    python3 crates/conveyor/bench/python_clients.py [jobs] [rounds]

Each round enqueues `jobs` no-op tasks with Celery's `.delay()` and then with Huey's
call-to-enqueue, on one client thread, and prints the rates (no worker runs: this is the
client's side only, as `POST /api/jobs` is). Redis db 14 and 15 are flushed before and after.
"""

import sys
import time

import redis
from celery import Celery
from huey import RedisHuey

JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3

celery = Celery("bench", broker="redis://127.0.0.1:6379/14")
celery.conf.task_ignore_result = True


@celery.task
def noop_celery():
    return None


huey = RedisHuey("bench", host="127.0.0.1", port=6379, db=15)


@huey.task()
def noop_huey():
    return None


def timed(enqueue):
    started = time.perf_counter()
    for _ in range(JOBS):
        enqueue()
    return JOBS / (time.perf_counter() - started)


def flush():
    for db in (14, 15):
        redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()


flush()
for round_ in range(ROUNDS):
    c = timed(noop_celery.delay)
    h = timed(noop_huey)
    print(f"round {round_ + 1}: Celery .delay() {c:,.0f}/s, Huey {h:,.0f}/s")
    flush()
