"""The Celery peer's tasks: the same jobs as faustus' bench-workflows.

A chord's members double their value and its callback receives the list of results; a chain's
steps add one, triple, and multiply by ten. Broker and result backend: Redis (REDIS_URL).
"""

import os

from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)


@app.task
def double(x):
    return x * 2


@app.task
def collect(results):
    return results


@app.task
def add1(x):
    return x + 1


@app.task
def triple(x):
    return x * 3


@app.task
def times10(x):
    return x * 10
