#!/usr/bin/env python3
"""What the application tests send, with the real PyPI clients (`statsd`,
`datadog`), the way applications send it.

    send_statsd.py mix udp://HOST:PORT VALUES    counters, gauges, timers, a set, tagged distributions
    send_statsd.py timers udp://HOST:PORT APP VALUES   APP.checkout timers
    send_statsd.py burst unix:///PATH N           N counter lines over the stream socket
"""
import sys

import statsd
from datadog.dogstatsd import DogStatsd


def udp(address):
    host, port = address[len("udp://"):].rsplit(":", 1)
    return host, int(port)


def values(path):
    with open(path) as f:
        return [float(line) for line in f if line.strip()]


def main():
    mode, address = sys.argv[1], sys.argv[2]
    if mode == "mix":
        host, port = udp(address)
        client = statsd.StatsClient(host, port, prefix="shop")
        timings = values(sys.argv[3])
        # Batched, as clients that send much do (fewer datagrams).
        for start in range(0, len(timings), 20):
            with client.pipeline() as pipe:
                for ms in timings[start:start + 20]:
                    pipe.timing("checkout", ms)
                    pipe.incr("requests")
        client.gauge("queue", 10)
        client.gauge("queue", 5, delta=True)
        with client.pipeline() as pipe:
            for member in ["ann", "bob", "cid", "dee", "eve", "fay", "gus", "ann", "bob"]:
                pipe.set("users", member)
        dog = DogStatsd(host=host, port=port, disable_telemetry=True)
        for size in range(1, 1001):
            dog.distribution("shop.payload.size", size, tags=["app:shop", "env:prod"])
        dog.flush()
        dog.close_socket()
    elif mode == "timers":
        host, port = udp(address)
        client = statsd.StatsClient(host, port, prefix=sys.argv[3])
        timings = values(sys.argv[4])
        for start in range(0, len(timings), 20):
            with client.pipeline() as pipe:
                for ms in timings[start:start + 20]:
                    pipe.timing("checkout", ms)
    elif mode == "burst":
        client = statsd.UnixSocketStatsClient(address[len("unix://"):])
        for _ in range(int(sys.argv[3])):
            client.incr("burst.hits")
        client.close()
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
