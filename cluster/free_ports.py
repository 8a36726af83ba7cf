"""Free loopback ports for servers that start a moment later (cluster/up, bench/).

Ports come from below the kernel's ephemeral range. A port that bind(0) hands out lies inside
that range, so between our check and the server's own bind any outgoing connection on the
machine may take it as its local port; CI saw a server fail to start that way. Below the
range only another listener can take it.

Run as a script: prints N ports, one per line.
"""

import random
import socket
import sys

LOWEST = 10000


def _ephemeral_start():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n, host="127.0.0.1"):
    """n distinct ports that nothing on host is bound to right now."""
    top = _ephemeral_start()
    held, ports = [], []
    try:
        if top - LOWEST < 4 * n:
            # No room below the range (an unusual sysctl): fall back to the kernel's choice.
            for _ in range(n):
                s = socket.socket()
                s.bind((host, 0))
                held.append(s)
                ports.append(s.getsockname()[1])
            return ports
        rng = random.SystemRandom()
        tried = 0
        while len(ports) < n:
            tried += 1
            if tried > 50 * n + 1000:
                raise OSError(f"no {n} free ports between {LOWEST} and {top} on {host}")
            port = rng.randrange(LOWEST, top)
            if port in ports:
                continue
            s = socket.socket()
            try:
                s.bind((host, port))
            except OSError:
                s.close()
                continue
            # Held until all are chosen, so the n ports are distinct and each was free.
            held.append(s)
            ports.append(port)
        return ports
    finally:
        for s in held:
            s.close()


def free_port(host="127.0.0.1"):
    return free_ports(1, host)[0]


if __name__ == "__main__":
    try:
        count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    except ValueError:
        sys.exit(f"usage: {sys.argv[0]} [COUNT]")
    for p in free_ports(count):
        print(p)
