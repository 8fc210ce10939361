#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A TCP proxy that delays every byte by a fixed time in each direction,
keeping order: latency for the partition tests on a kernel without sch_netem.

  delay_proxy.py DELAY_MS LISTEN_HOST:PORT=TARGET_HOST:PORT ...
"""
import asyncio
import sys
import time


async def pipe(reader, writer, delay):
    """Forwards reader -> writer, each chunk delay seconds after it arrived."""
    q = asyncio.Queue()

    async def later():
        while True:
            due, data = await q.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.ensure_future(later())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            q.put_nowait((time.monotonic() + delay, data))
    except (ConnectionError, OSError):
        pass
    q.put_nowait((0, None))
    try:
        await sender
    except (ConnectionError, OSError):
        pass


def handler(target, delay):
    host, port = target.rsplit(":", 1)

    async def on_client(cr, cw):
        try:
            sr, sw = await asyncio.open_connection(host, int(port))
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, sw, delay), pipe(sr, cw, delay))

    return on_client


async def main():
    delay = int(sys.argv[1]) / 1000.0
    servers = []
    for spec in sys.argv[2:]:
        listen, target = spec.split("=")
        lhost, lport = listen.rsplit(":", 1)
        servers.append(await asyncio.start_server(handler(target, delay), lhost, int(lport)))
    print(f"delay proxy: {delay * 1000:.0f} ms each way for {sys.argv[2:]}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
