#!/usr/bin/env python3
"""A small instrumented application: a shop worker that serves fake
requests, timing a fast and a slow function per request with a @timeit
decorator, the pattern applications already have, and reporting through
StatsD to its host's curvemon agent.

    python3 examples/shop.py --name shop --statsd udp://127.0.0.1:8125
    python3 examples/shop.py --name shop --statsd unix:///run/curvemon/statsd-stream.sock --leak 200000

Over the agent's Unix socket the agent knows the process, and charts its
CPU and memory as an instance of the application; over UDP, give it an
--instance name instead. Needs the `statsd` package from PyPI (or
`datadog` with --client datadog).
"""

import argparse
import functools
import os
import random
import signal
import sys
import time


def client(args):
    """A StatsD client for --statsd: udp://host:port or unix:///path."""
    address = args.statsd
    if args.client == "datadog":
        from datadog.dogstatsd import DogStatsd

        tags = [f"app:{args.name}"] + ([f"instance:{args.instance}"] if args.instance else [])
        if address.startswith("unix://"):
            return DogStatsd(socket_path=address[len("unix://"):], constant_tags=tags, disable_telemetry=True)
        host, port = address[len("udp://"):].rsplit(":", 1)
        return DogStatsd(host=host, port=int(port), constant_tags=tags, disable_telemetry=True)
    import statsd

    if address.startswith("unix://"):
        return statsd.UnixSocketStatsClient(address[len("unix://"):], prefix=args.name)
    host, port = address[len("udp://"):].rsplit(":", 1)
    return statsd.StatsClient(host, int(port), prefix=args.name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="shop", help="the application's name (default shop)")
    parser.add_argument("--statsd", default="udp://127.0.0.1:8125", help="udp://host:port or unix:///path")
    parser.add_argument("--client", choices=["statsd", "datadog"], default="statsd")
    parser.add_argument("--instance", default="", help="an instance name (over UDP the agent cannot tell)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests a second (default 20)")
    parser.add_argument("--slow-ms", type=float, default=40.0, help="median of the slow function, ms")
    parser.add_argument("--leak", type=int, default=0, metavar="BYTES", help="memory to leak per request")
    parser.add_argument("--requests", type=int, default=0, help="stop after this many (default: run on)")
    args = parser.parse_args()

    stats = client(args)

    def timeit(name):
        """Times the function and reports it as a StatsD timer."""

        def wrap(function):
            @functools.wraps(function)
            def timed(*a, **kw):
                start = time.perf_counter()
                try:
                    return function(*a, **kw)
                finally:
                    stats.timing(name, (time.perf_counter() - start) * 1000)

            return timed

        return wrap

    @timeit("lookup")
    def lookup():
        time.sleep(random.lognormvariate(-7.0, 0.5))  # ~1 ms

    @timeit("checkout")
    def checkout():
        time.sleep(random.lognormvariate(0, 0.6) * args.slow_ms / 1000)

    leaked = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    served = 0
    print(f"{args.name} (pid {os.getpid()}) reporting to {args.statsd}", flush=True)
    while not args.requests or served < args.requests:
        started = time.monotonic()
        lookup()
        checkout()
        stats.incr("requests")
        stats.gauge("queue", random.randint(0, 20))
        if args.leak:
            # Filled, so the pages are really used (zeros might not be).
            leaked.append(b"x" * args.leak)
        served += 1
        time.sleep(max(0.0, 1.0 / args.rate - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
