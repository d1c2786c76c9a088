"""A real OTLP receiver for tests: gRPC and HTTP/protobuf on 127.0.0.1.

    with OtlpReceiver("grpc") as receiver:          # or "http"
        env = receiver.env()                        # OTEL_* pointing at it (all three signals)
        ... run the code under test with env as its process environment (the OTLP
        exporters read os.environ: in process, monkeypatch.setenv each variable) ...
        metric = receiver.wait_for_metric("openclaw.session.stuck")
        assert metric.kind == "sum" and metric.monotonic
        assert metric.points[0].attributes["openclaw.state"] == "idle"
        record = receiver.wait_for_log("openclaw.session.stuck")

The gRPC server is grpcio with opentelemetry-proto's collector service stubs (MetricsService,
LogsService, TraceService); the HTTP server is the standard library's http.server answering
POST /v1/metrics, /v1/logs and /v1/traces with protobuf bodies (gzip accepted). Everything
received is decoded into plain dataclasses and kept. The receiver can be stopped and started
again on the same port (collector outage), told to answer errors (`fail_with`), or to hold
requests until released (`hold()`: a slow collector).

Polling helpers wait with a deadline; they never sleep a fixed time to assert timing.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import grpc
from opentelemetry.proto.collector.logs.v1 import (
    logs_service_pb2,
    logs_service_pb2_grpc,
)
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)

T = TypeVar("T")

SIGNALS = ("metrics", "logs", "traces")
_TEMPORALITY = {0: "unspecified", 1: "delta", 2: "cumulative"}


# --------------------------------------------------------------------------------------------
# Decoded data
# --------------------------------------------------------------------------------------------
def any_value(value: Any) -> Any:
    """An OTLP AnyValue as a Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass
class MetricPoint:
    attributes: dict[str, Any]
    start_time_unix_nano: int
    time_unix_nano: int
    value: float | int | None = None  # sum / gauge
    count: int | None = None  # histogram
    sum: float | None = None
    bucket_counts: list[int] = field(default_factory=list)
    explicit_bounds: list[float] = field(default_factory=list)
    min: float | None = None
    max: float | None = None


@dataclass
class ReceivedMetric:
    name: str
    kind: str  # sum | gauge | histogram | exponential_histogram | summary
    unit: str
    description: str
    monotonic: bool | None
    temporality: str | None
    scope: str
    resource: dict[str, Any]
    points: list[MetricPoint]

    def point(self, **attrs: Any) -> MetricPoint | None:
        """The point whose attributes include all of `attrs` (keys with dots: pass a dict via **)."""
        for p in self.points:
            if all(p.attributes.get(key) == value for key, value in attrs.items()):
                return p
        return None

    def points_with(self, match: dict[str, Any]) -> list[MetricPoint]:
        return [p for p in self.points if all(p.attributes.get(k) == v for k, v in match.items())]

    @property
    def attribute_keys(self) -> set[str]:
        return {key for p in self.points for key in p.attributes}


@dataclass
class ReceivedLog:
    event_name: str
    severity_number: int
    severity_text: str
    body: Any
    attributes: dict[str, Any]
    scope: str
    resource: dict[str, Any]
    time_unix_nano: int


@dataclass
class ReceivedSpan:
    name: str
    status_code: int  # 0 unset, 1 ok, 2 error
    attributes: dict[str, Any]
    scope: str
    resource: dict[str, Any]
    start_time_unix_nano: int
    end_time_unix_nano: int


def decode_metrics(request: Any) -> list[ReceivedMetric]:
    out: list[ReceivedMetric] = []
    for rm in request.resource_metrics:
        resource = attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data") or ""
                data = getattr(metric, kind) if kind else None
                points: list[MetricPoint] = []
                monotonic = None
                temporality = None
                if kind in ("sum", "gauge"):
                    if kind == "sum":
                        monotonic = data.is_monotonic
                        temporality = _TEMPORALITY.get(data.aggregation_temporality)
                    for dp in data.data_points:
                        value_kind = dp.WhichOneof("value")
                        points.append(
                            MetricPoint(
                                attributes=attributes(dp.attributes),
                                start_time_unix_nano=dp.start_time_unix_nano,
                                time_unix_nano=dp.time_unix_nano,
                                value=getattr(dp, value_kind) if value_kind else None,
                            )
                        )
                elif kind == "histogram":
                    temporality = _TEMPORALITY.get(data.aggregation_temporality)
                    for dp in data.data_points:
                        points.append(
                            MetricPoint(
                                attributes=attributes(dp.attributes),
                                start_time_unix_nano=dp.start_time_unix_nano,
                                time_unix_nano=dp.time_unix_nano,
                                count=dp.count,
                                sum=dp.sum if dp.HasField("sum") else None,
                                bucket_counts=list(dp.bucket_counts),
                                explicit_bounds=list(dp.explicit_bounds),
                                min=dp.min if dp.HasField("min") else None,
                                max=dp.max if dp.HasField("max") else None,
                            )
                        )
                out.append(
                    ReceivedMetric(
                        name=metric.name,
                        kind=kind,
                        unit=metric.unit,
                        description=metric.description,
                        monotonic=monotonic,
                        temporality=temporality,
                        scope=sm.scope.name,
                        resource=resource,
                        points=points,
                    )
                )
    return out


def decode_logs(request: Any) -> list[ReceivedLog]:
    out: list[ReceivedLog] = []
    for rl in request.resource_logs:
        resource = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for record in sl.log_records:
                out.append(
                    ReceivedLog(
                        event_name=record.event_name,
                        severity_number=record.severity_number,
                        severity_text=record.severity_text,
                        body=any_value(record.body),
                        attributes=attributes(record.attributes),
                        scope=sl.scope.name,
                        resource=resource,
                        time_unix_nano=record.time_unix_nano,
                    )
                )
    return out


def decode_spans(request: Any) -> list[ReceivedSpan]:
    out: list[ReceivedSpan] = []
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append(
                    ReceivedSpan(
                        name=span.name,
                        status_code=span.status.code,
                        attributes=attributes(span.attributes),
                        scope=ss.scope.name,
                        resource=resource,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                    )
                )
    return out


_REQUEST_TYPES = {
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
    "traces": trace_service_pb2.ExportTraceServiceRequest,
}
_RESPONSE_TYPES = {
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
    "traces": trace_service_pb2.ExportTraceServiceResponse,
}
_DECODERS: dict[str, Callable[[Any], list[Any]]] = {
    "metrics": decode_metrics,
    "logs": decode_logs,
    "traces": decode_spans,
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Failure(Exception):
    pass


# --------------------------------------------------------------------------------------------
# The receiver
# --------------------------------------------------------------------------------------------
class OtlpReceiver:
    """OTLP receiver on 127.0.0.1 speaking `protocol` ("grpc" or "http")."""

    def __init__(self, protocol: str = "grpc", port: int | None = None) -> None:
        if protocol not in ("grpc", "http"):
            raise ValueError("protocol must be grpc or http")
        self.protocol = protocol
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._requests: dict[str, int] = {s: 0 for s in SIGNALS}
        self._metric_batches: list[list[ReceivedMetric]] = []
        self._logs: list[ReceivedLog] = []
        self._spans: list[ReceivedSpan] = []
        self._headers: list[tuple[str, dict[str, str]]] = []  # (signal, request headers)
        self._fail_with: int | None = None  # HTTP status; gRPC maps it to UNAVAILABLE/INTERNAL
        self._gate = threading.Event()
        self._gate.set()
        self.entered = threading.Event()  # set when a request is waiting at a closed gate
        self._grpc_server: grpc.Server | None = None
        self._http_server: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> OtlpReceiver:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._grpc_server is not None or self._http_server is not None

    def start(self) -> None:
        if self.running:
            return
        if self.protocol == "grpc":
            self._start_grpc()
        else:
            self._start_http()

    def stop(self) -> None:
        self._gate.set()  # never leave a held request behind
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait(5)
            self._grpc_server = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
            if self._http_thread is not None:
                self._http_thread.join(5)
                self._http_thread = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _start_grpc(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        receiver = self

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                return receiver._grpc_export("metrics", request, context)

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                return receiver._grpc_export("logs", request, context)

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                return receiver._grpc_export("traces", request, context)

        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
        bound = server.add_insecure_port(f"127.0.0.1:{self.port}")
        if bound != self.port:
            server.stop(None)
            raise RuntimeError(f"could not bind gRPC receiver to 127.0.0.1:{self.port}")
        server.start()
        self._grpc_server = server

    def _grpc_export(self, signal: str, request: Any, context: Any) -> Any:
        headers = {key: value for key, value in context.invocation_metadata()}
        try:
            self._accept(signal, request, headers)
        except _Failure as failure:
            status = int(str(failure))
            code = grpc.StatusCode.UNAVAILABLE if status in (429, 502, 503, 504) else grpc.StatusCode.INTERNAL
            context.abort(code, f"receiver told to fail ({status})")
        return _RESPONSE_TYPES[signal]()

    def _start_http(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                signal = {"/v1/metrics": "metrics", "/v1/logs": "logs", "/v1/traces": "traces"}.get(self.path)
                if signal is None:
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                try:
                    request = _REQUEST_TYPES[signal].FromString(body)
                except Exception:
                    self.send_error(400, "not an OTLP protobuf request")
                    return
                try:
                    receiver._accept(signal, request, {k.lower(): v for k, v in self.headers.items()})
                except _Failure as failure:
                    self.send_response(int(str(failure)))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = _RESPONSE_TYPES[signal]().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True
            block_on_close = False

        self._http_server = Server(("127.0.0.1", self.port), Handler)
        self._http_thread = threading.Thread(
            target=self._http_server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._http_thread.start()

    def _accept(self, signal: str, request: Any, headers: dict[str, str]) -> None:
        if not self._gate.is_set():
            self.entered.set()
            self._gate.wait()
        with self._lock:
            fail = self._fail_with
        if fail is not None:
            raise _Failure(str(fail))
        decoded = _DECODERS[signal](request)
        with self._lock:
            self._requests[signal] += 1
            self._headers.append((signal, headers))
            if signal == "metrics":
                self._metric_batches.append(decoded)
            elif signal == "logs":
                self._logs.extend(decoded)
            else:
                self._spans.extend(decoded)

    # -- behaviour switches ---------------------------------------------------------------
    def fail_with(self, status: int | None) -> None:
        """Answer every request with this HTTP status (gRPC: UNAVAILABLE for 429/502/503/504,
        else INTERNAL); None: answer normally again."""
        with self._lock:
            self._fail_with = status

    @contextmanager
    def hold(self) -> Iterator[threading.Event]:
        """Hold every request until the block exits (a collector that does not answer).
        Yields the `entered` event, set once a request is being held."""
        self.entered.clear()
        self._gate.clear()
        try:
            yield self.entered
        finally:
            self._gate.set()

    @property
    def holding(self) -> bool:
        """True while `hold()` keeps requests waiting."""
        return not self._gate.is_set()

    # -- endpoints ------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, signals: tuple[str, ...] = SIGNALS, **extra: str) -> dict[str, str]:
        """OTEL_* variables that point the given signals at this receiver."""
        env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc" if self.protocol == "grpc" else "http/protobuf"}
        if set(signals) == set(SIGNALS):
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.endpoint
        else:
            for signal in signals:
                endpoint = self.endpoint if self.protocol == "grpc" else f"{self.endpoint}/v1/{signal}"
                env[f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"] = endpoint
        env.update(extra)
        return env

    # -- what was received ----------------------------------------------------------------
    def requests(self, signal: str) -> int:
        with self._lock:
            return self._requests[signal]

    def headers(self, signal: str | None = None) -> list[dict[str, str]]:
        """The headers (gRPC: metadata) of every accepted request, optionally of one signal."""
        with self._lock:
            return [headers for sig, headers in self._headers if signal is None or sig == signal]

    def clear(self) -> None:
        with self._lock:
            self._requests = {s: 0 for s in SIGNALS}
            self._metric_batches.clear()
            self._logs.clear()
            self._spans.clear()
            self._headers.clear()

    def metric_batches(self) -> list[list[ReceivedMetric]]:
        with self._lock:
            return [list(batch) for batch in self._metric_batches]

    def metrics(self, name: str | None = None) -> list[ReceivedMetric]:
        """Every received metric (oldest first), optionally only those called `name`."""
        return [m for batch in self.metric_batches() for m in batch if name is None or m.name == name]

    def metric(self, name: str) -> ReceivedMetric | None:
        """The latest received state of a metric (cumulative: the last export holds it all)."""
        found = self.metrics(name)
        return found[-1] if found else None

    def metric_names(self) -> set[str]:
        return {m.name for m in self.metrics()}

    def logs(self, event_name: str | None = None) -> list[ReceivedLog]:
        with self._lock:
            return [r for r in self._logs if event_name is None or r.event_name == event_name]

    def spans(self, name: str | None = None) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self._spans if name is None or s.name == name]

    # -- waiting (poll with a deadline) ---------------------------------------------------
    def wait_until(self, check: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"OTLP receiver: timed out after {timeout}s waiting for {what}")
            time.sleep(0.02)

    def wait_for_metric(
        self,
        name: str,
        predicate: Callable[[ReceivedMetric], bool] = lambda m: True,
        timeout: float = 15.0,
    ) -> ReceivedMetric:
        def check() -> ReceivedMetric | None:
            metric = self.metric(name)
            return metric if metric is not None and predicate(metric) else None

        return self.wait_until(check, timeout, f"metric {name}")

    def wait_for_log(self, event_name: str, count: int = 1, timeout: float = 15.0) -> ReceivedLog:
        return self.wait_until(
            lambda: (lambda found: found[count - 1] if len(found) >= count else None)(self.logs(event_name)),
            timeout,
            f"{count} log record(s) {event_name}",
        )

    def wait_for_span(self, name: str, timeout: float = 15.0) -> ReceivedSpan:
        return self.wait_until(lambda: (self.spans(name) or [None])[0], timeout, f"span {name}")
