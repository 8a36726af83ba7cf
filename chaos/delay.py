#!/usr/bin/env python3
"""A TCP forwarder that delays every byte by a fixed time plus jitter (chaos/run's `lossy`).

`tc netem` is not available here, so delay on the replicas' peer links is added in user
space: in a replica's namespace, nftables redirects inbound connections for the peer port to
this forwarder, which relays them to the replica with each chunk held back. The relay keeps
the byte order of each direction (a chunk never overtakes an earlier one), as a delayed link
does. TLS passes through untouched. Standard library only.

Usage: delay.py --listen PORT --to HOST:PORT --delay-ms D [--jitter-ms J] [--seed N]
"""
import argparse
import asyncio
import random
import time


async def pump(reader, writer, delay, jitter, rng):
    queue = asyncio.Queue()

    async def send():
        while True:
            due, chunk = await queue.get()
            if chunk is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    last_due = 0.0
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            # Never earlier than the chunk before: jitter must not reorder a byte stream.
            last_due = max(last_due, time.monotonic() + delay + rng.uniform(0, jitter))
            await queue.put((last_due, chunk))
    except (ConnectionError, OSError):
        pass
    await queue.put((0, None))
    try:
        await sender
    except (ConnectionError, OSError):
        pass
    try:
        writer.close()
    except OSError:
        pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--delay-ms", type=float, required=True)
    ap.add_argument("--jitter-ms", type=float, default=0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    host, port = a.to.rsplit(":", 1)
    rng = random.Random(a.seed)

    async def handle(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        d, j = a.delay_ms / 1000, a.jitter_ms / 1000
        await asyncio.gather(pump(client_reader, up_writer, d, j, rng), pump(up_reader, client_writer, d, j, rng))

    server = await asyncio.start_server(handle, "0.0.0.0", a.listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
