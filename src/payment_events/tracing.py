"""OpenTelemetry, optional (``pip install payment-events[otel]``): one trace from the request to Kafka.

* Publishing: an event published without a ``traceparent`` gets the current span's
  (:func:`with_current_trace`), so the outbox row remembers which request wrote it.
* Relaying: each message is produced inside a ``PRODUCER`` span that is a child of that stored context
  (:class:`ProduceTracing`), and the message leaves with exactly one ``traceparent`` header, the
  span's. The headers are handed to librdkafka as a mapping, so when the confluent-kafka instrumentation
  is also on (``opentelemetry-instrument``) its own ``send`` span is a child of ours and its injection
  replaces the header instead of appending a second one.
* Logging: :class:`TraceContextFilter` adds ``trace_id`` and ``span_id`` to every log line written
  inside a span (``configure_logging`` installs it).

Without ``opentelemetry-api`` every function here is a no-op and nothing is imported. The events and the
codec never import this module: a bad traceparent is handled by the event model itself (dropped with a
warning, see ``payment_events.events.envelope``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

__all__ = [
    "ProduceTracing",
    "TraceContextFilter",
    "current_traceparent",
    "otel_available",
    "with_current_trace",
]

E = TypeVar("E")
TRACEPARENT = "traceparent"


@cache
def otel_available() -> bool:
    """Whether ``opentelemetry-api`` is installed (checked once)."""
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


def _current_span_context() -> Any:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return context if context.is_valid else None


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or ``None`` (no OpenTelemetry, or no span)."""
    if not otel_available():
        return None
    context = _current_span_context()
    if context is None:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def with_current_trace(event: E) -> E:
    """``event`` with the current span's traceparent if it has none (the same object otherwise)."""
    if getattr(event, "traceparent", None) is not None:
        return event
    traceparent = current_traceparent()
    if traceparent is None:
        return event
    copy: E = event.model_copy(update={TRACEPARENT: traceparent})  # type: ignore[attr-defined]
    return copy


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex) to records logged inside a valid span."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate the record; never drops it."""
        if otel_available() and not hasattr(record, "trace_id"):
            context = _current_span_context()
            if context is not None:
                record.trace_id = f"{context.trace_id:032x}"
                record.span_id = f"{context.span_id:016x}"
        return True


def _header_propagation() -> tuple[Any, Any]:
    """A getter and a setter of W3C fields in a ``{name: bytes}`` header mapping (built lazily: the
    base classes come from opentelemetry-api)."""
    from opentelemetry.propagators.textmap import Getter, Setter

    class BytesGetter(Getter[dict[str, bytes]]):
        def get(self, carrier: dict[str, bytes], key: str) -> list[str] | None:
            value = carrier.get(key)
            return None if value is None else [value.decode("ascii", "replace")]

        def keys(self, carrier: dict[str, bytes]) -> list[str]:
            return list(carrier)

    class BytesSetter(Setter[dict[str, bytes]]):
        def set(self, carrier: dict[str, bytes], key: str, value: str) -> None:
            carrier[key] = value.encode()

    return BytesGetter(), BytesSetter()


class ProduceTracing:
    """Produces one relay message inside a ``PRODUCER`` span, child of the context stored with the event.

    ``produce(produce_fn, topic, payload, key, headers=..., on_delivery=...)`` starts the span, sets it as the
    current context while ``produce_fn`` runs (so an instrumented client nests under it), replaces the
    stored ``traceparent`` header by the span's own, and ends the span when the delivery report
    arrives (with an error status if the delivery failed).
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.propagate import extract, inject

        self._trace = trace
        self._extract = extract
        self._inject = inject
        self._provider = tracer_provider
        self._tracer = trace.get_tracer("payment_events.relay", tracer_provider=tracer_provider)
        self._getter, self._setter = _header_propagation()

    def enabled(self) -> bool:
        """Whether spans are recorded: a provider was given, or an SDK provider is installed globally
        (until then the relay produces exactly as without OpenTelemetry)."""
        if self._provider is not None:
            return True
        from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider

        return not isinstance(self._trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider)

    def produce(
        self,
        produce_fn: Callable[..., Any],
        topic: str,
        payload: bytes,
        key: bytes,
        *,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: Callable[[Any, Any], None],
    ) -> None:
        """Call ``produce_fn(topic, payload, key, headers=..., on_delivery=...)`` inside the span."""
        from opentelemetry import context as otel_context
        from opentelemetry.trace import SpanKind, Status, StatusCode

        carrier = dict(headers)
        if len(carrier) != len(headers):  # a repeated header name: keep the list, only drop traceparent
            kept: Any = [(n, v) for n, v in headers if n != TRACEPARENT]
        else:
            kept = carrier
        parent = self._extract(carrier, getter=self._getter)
        event_id = carrier.get("ce_id", b"").decode("ascii", "replace")
        span = self._tracer.start_span(
            f"{topic} publish",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "publish",
                "messaging.destination.name": topic,
                "messaging.message.id": event_id,
            },
        )
        # Without an SDK the span is the invalid no-op span: then the stored context travels on unchanged.
        valid = span.get_span_context().is_valid
        context = self._trace.set_span_in_context(span, parent) if valid else parent
        if isinstance(kept, dict):
            kept.pop(TRACEPARENT, None)
            kept.pop("tracestate", None)
            self._inject(kept, context=context, setter=self._setter)
        else:
            injected: dict[str, bytes] = {}
            self._inject(injected, context=context, setter=self._setter)
            kept.extend(injected.items())

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                span.set_status(Status(StatusCode.ERROR, str(getattr(err, "name", lambda: "error")())))
            else:
                span.set_attribute("messaging.kafka.destination.partition", msg.partition())
                span.set_attribute("messaging.kafka.message.offset", msg.offset())
            span.end()
            on_delivery(err, msg)

        token = otel_context.attach(context)
        try:
            # key by keyword: the instrumentation's ProxiedProducer moves topic and value into keywords
            # and would pass a positional key as the topic.
            produce_fn(topic, payload, key=key, headers=kept, on_delivery=delivered)
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.end()
            raise
        finally:
            otel_context.detach(token)
