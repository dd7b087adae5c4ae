#!/usr/bin/env python3
"""Prints N distinct TCP ports free on 127.0.0.1 and 0.0.0.0 right now, one per line.

Chosen below Linux's ephemeral range (32768-60999), as tests/common/mod.rs `free_port` does:
a port the kernel hands out for port 0 can be taken again by any outgoing connection before the
server binds it ("Address already in use"). All N are held until all are chosen, so they differ.
"""
import random
import socket
import sys


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    held, ports = [], []
    for port in random.sample(range(20000, 32000), 2000):
        if len(ports) == n:
            break
        s = socket.socket()
        try:
            with socket.socket() as probe:
                probe.bind(("0.0.0.0", port))
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        held.append(s)
        ports.append(port)
    if len(ports) < n:
        sys.exit(f"free-ports: found only {len(ports)} of {n} free ports in 20000-31999")
    print("\n".join(map(str, ports)))


if __name__ == "__main__":
    main()
