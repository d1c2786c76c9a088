"""A minimal local OTLP/HTTP receiver for the export bench: 200 to every POST, counts them.

    python bench/otlp_sink.py PORT COUNT_FILE

Answers `POST /v1/metrics`, `/v1/logs`, `/v1/traces` with 200 and an empty protobuf body (an
empty ExportServiceResponse: full success). Writes "requests bytes" to COUNT_FILE on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys


async def main(port: int, count_file: str) -> None:
    stats = {"requests": 0, "bytes": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                length = 0
                chunked = False
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                if chunked:
                    while True:
                        size = int((await reader.readline()).split(b";")[0], 16)
                        data = await reader.readexactly(size + 2)
                        stats["bytes"] += size
                        if size == 0:
                            break
                        del data
                elif length:
                    await reader.readexactly(length)
                    stats["bytes"] += length
                stats["requests"] += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    async with server:
        await stopped.wait()
    with open(count_file, "w") as out:
        out.write(f"{stats['requests']} {stats['bytes']}\n")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
