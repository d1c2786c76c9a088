"""No outbound request to an address a client can choose (issue 12): a gateway id from the
events never leaves its label, never picks a host the operator did not list, and each gateway can
have its own address and secret. Answers are read up to a size cap."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from app.outcomes import RecoveryOutcome
from app.recovery import MAX_ANSWER_BYTES, WebhookExecutor
from app.webhook_address import Address, AddressBook
from tests.support.builders import recovery_request

REQUEST = recovery_request(gatewayId="gw-1", sessionKey="s", requestedAt=1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("gateway", ["..", ".", "a/b", "a.b", "127.0.0.2", "localhost:9", "x@evil", "%2e%2e",
                                     "a b", "", "x" * 64])
def test_an_unsafe_id_is_never_substituted(gateway: str) -> None:
    book = AddressBook("http://127.0.0.1:9000/recover/{gatewayId}/now", token="shared")
    assert book.address(gateway) is None


def test_a_safe_id_stays_in_its_path_segment() -> None:
    book = AddressBook("http://127.0.0.1:9000/recover/{gatewayId}", token="shared")
    assert book.address("gw-eu_1") == Address("http://127.0.0.1:9000/recover/gw-eu_1", "shared")


def test_a_host_template_addresses_only_the_listed_gateways() -> None:
    book = AddressBook("http://{gatewayId}:8787/recover", gateways="gw-a, gw-b")
    assert book.address("gw-a") == Address("http://gw-a:8787/recover", "")
    assert book.address("localhost") is None  # a safe label, but not one the operator listed
    assert AddressBook("http://{gatewayId}:8787/recover").address("gw-a") is None


def test_per_gateway_addresses_and_secrets() -> None:
    book = AddressBook("http://127.0.0.1:9000/{gatewayId}", token="shared",
                       urls="gw-a=http://10.1.2.3:8787/r, gw-b=https://b.example/r",
                       tokens="gw-a=c2VjcmV0LWE=, gw-c=secret-c")
    assert book.address("gw-a") == Address("http://10.1.2.3:8787/r", "c2VjcmV0LWE=")  # base64 padding kept
    assert book.address("gw-b") == Address("https://b.example/r", "shared")
    assert book.address("gw-c") == Address("http://127.0.0.1:9000/gw-c", "secret-c")


def test_without_a_template_only_listed_gateways_are_addressed() -> None:
    book = AddressBook("", urls="gw-a=http://127.0.0.1:1/r")
    assert book.address("gw-a") is not None and book.address("gw-b") is None


async def _huge_answer_server(sent: list[int]) -> asyncio.base_events.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 419430400\r\n\r\n")
        chunk = b"[" * (1 << 20)
        try:
            for _ in range(400):
                writer.write(chunk)
                await writer.drain()
                sent[0] += len(chunk)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.anyio
async def test_an_answer_is_read_only_up_to_the_cap() -> None:
    sent = [0]
    server = await _huge_answer_server(sent)
    port = server.sockets[0].getsockname()[1]
    executor = WebhookExecutor(AddressBook(f"http://127.0.0.1:{port}/{{gatewayId}}"), timeout_ms=10_000)
    try:
        outcome = await executor.execute(REQUEST)
    finally:
        await executor.aclose()
        server.close()
    assert outcome.status == "failed" and f"{MAX_ANSWER_BYTES} bytes" in (outcome.error or "")
    assert sent[0] < 64 << 20  # the 400 MiB answer was cut off, not read


@pytest.mark.anyio
async def test_an_unaddressable_gateway_gets_no_request() -> None:
    executor = WebhookExecutor(AddressBook("http://127.0.0.1:1/{gatewayId}"))
    try:
        outcome = await executor.execute(msgspec.structs.replace(REQUEST, gatewayId="../admin"))
    finally:
        await executor.aclose()
    assert outcome == RecoveryOutcome("failed", "none", "unsafe_gateway_id")
