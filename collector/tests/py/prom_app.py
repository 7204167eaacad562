#!/usr/bin/env python3
"""An application instrumented with the PyPI prometheus_client, serving
/metrics on 127.0.0.1:PORT: a counter, a gauge, a histogram and a summary
that move a little every 100 ms. Prints `ready` once it serves.

    prom_app.py PORT
"""
import sys
import time

from prometheus_client import Counter, Gauge, Histogram, Summary, start_http_server

invoices = Counter("invoices", "Invoices written.", ["kind"])
queue = Gauge("queue_depth", "Jobs waiting.")
jobs = Histogram("job_seconds", "Time per job.", buckets=[0.05, 0.1, 0.5, 1.0])
rpc = Summary("rpc_seconds", "Time per RPC.")

start_http_server(int(sys.argv[1]), addr="127.0.0.1")
print("ready", flush=True)
n = 0
while True:
    n += 1
    invoices.labels(kind="monthly").inc()
    queue.set(n % 7)
    jobs.observe(0.07)
    rpc.observe(0.2)
    time.sleep(0.1)
