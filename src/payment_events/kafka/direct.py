"""``DirectPublisher``: publish straight to Kafka, without a database. Fast, and NOT crash-safe.

.. warning::
   A direct publish lives only in this process's memory until the broker acknowledges it. If the
   process crashes, is killed or loses power in between, **the event is lost**, and nothing tells the
   payment code that the payment row it just committed has no event. It is also not atomic with your
   database transaction: the payment can commit and the event fail, or the event go out and the
   payment roll back. The transactional outbox (``OutboxPublisher`` plus ``payment-events relay``) has
   none of these gaps and is the safe default; use this class only where a lost event is acceptable
   or where no database exists, and prefer ``publish_and_wait`` for events that matter.

``publish(event)`` encodes the event, hands it to librdkafka and returns at once; ``publish_async(event)``
does the same and returns a ``concurrent.futures.Future``. A background thread serves delivery reports
and resolves the future with a :class:`DeliveryReceipt` (partition and offset) or fails it with
:class:`~payment_events.errors.TransientPublishError` /
:class:`~payment_events.errors.PermanentPublishError`. ``publish_and_wait(event, timeout)`` is the same
and blocks until the broker acknowledged (the spec's "wait for an acknowledgment" for critical events).
The producer uses the relay's settings: idempotent, ``acks=all``, ordered per partition. ``close()``
flushes what is queued (bounded) and stops the thread.

For asyncio code, ``publisher.aio()`` gives an :class:`AsyncDirectPublisher` over the same producer:
``await aio.publish_payment_succeeded(event)`` resolves once the broker acknowledged (or, in
fire-and-forget mode, as soon as the event is queued). The delivery report still arrives on the poll
thread; it settles an asyncio future on the caller's loop through ``loop.call_soon_threadsafe``, so the
event loop is never blocked waiting for the broker.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from payment_events.errors import PermanentPublishError, PublishError, TransientPublishError
from payment_events.events.publisher import PublishMethodsMixin
from payment_events.kafka.client import flush_then_purge
from payment_events.kafka.topics import TopicRouter

if TYPE_CHECKING:
    from payment_events.events import PaymentEvent
    from payment_events.events.codec import EncodedEvent

log = logging.getLogger("payment_events.kafka.direct")


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """The broker acknowledged event ``event_id`` at ``topic``/``partition``/``offset``."""

    event_id: str
    topic: str
    partition: int
    offset: int


class DirectPublisher(PublishMethodsMixin):
    """Publishes events to Kafka asynchronously, from memory (see the module warning: it can lose events).

    Implements :class:`~payment_events.events.publisher.PaymentEventPublisher` (``publish``, ``publish_many``
    and the eight typed methods). By default ``publish`` only enqueues; with ``wait_for_ack=True`` it
    returns only after the broker acknowledged (raising a ``PublishError`` otherwise), which is what the
    port promises for a direct publisher. ``on_error(event_id, error)`` hears about failed deliveries
    of fire-and-forget publishes (called on the poll thread; keep it short). Thread-safe.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        router: TopicRouter | None = None,
        producer_overrides: Mapping[str, Any] | None = None,
        wait_for_ack: bool = False,
        ack_timeout: float = 30.0,
        on_error: Callable[[str, PublishError], None] | None = None,
        poll_interval: float = 0.05,
        enqueue_timeout: float = 5.0,
    ) -> None:
        from payment_events.kafka.producer import producer_config

        self._router = router or TopicRouter()
        config = producer_config(bootstrap_servers, producer_overrides)
        config["error_cb"] = self._on_error
        config.setdefault("logger", logging.getLogger("payment_events.kafka.direct.librdkafka"))
        from confluent_kafka import KafkaException, Producer  # lazily: `import payment_events` stays light

        self._kafka_exception: type[Exception] = KafkaException
        self._producer: Any = Producer(config)
        self._wait_for_ack = wait_for_ack
        self._ack_timeout = ack_timeout
        self._on_failure = on_error
        self._poll_interval = poll_interval
        self._enqueue_timeout = enqueue_timeout
        self._closed = False
        self._stop_polling = threading.Event()
        self._fatal: str | None = None
        self._thread = threading.Thread(
            target=self._poll_loop, name="payment-events-direct-poll", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ publishing
    def publish(self, event: PaymentEvent) -> None:
        """Enqueue ``event`` and return at once (or, with ``wait_for_ack``, once the broker acknowledged).

        Without ``wait_for_ack`` a failed delivery is logged (``direct.publish_failed``) and passed to
        ``on_error``; use :meth:`publish_async` or :meth:`publish_and_wait` to see the outcome yourself.
        """
        future = self.publish_async(event)
        if self._wait_for_ack:
            self._result(future, self._ack_timeout)

    def publish_many(self, events: Iterable[PaymentEvent]) -> None:
        """Enqueue several events in order (one key's events keep their order on its partition)."""
        futures = [self.publish_async(event) for event in events]
        if self._wait_for_ack:
            deadline = time.monotonic() + self._ack_timeout
            for future in futures:
                self._result(future, max(0.0, deadline - time.monotonic()))

    def publish_async(self, event: PaymentEvent) -> Future[DeliveryReceipt]:
        """Encode and enqueue ``event``; return at once with a future of its :class:`DeliveryReceipt`."""
        from payment_events.events.codec import encode
        from payment_events.tracing import with_current_trace

        encoded = encode(with_current_trace(event))
        return self.publish_encoded(encoded, self._router.topic_for(encoded.event_type))

    def publish_and_wait(self, event: PaymentEvent, timeout: float = 30.0) -> DeliveryReceipt:
        """Publish ``event`` and block until the broker acknowledged it (or raise a ``PublishError``)."""
        return self._result(self.publish_async(event), timeout)

    @staticmethod
    def _result(future: Future[DeliveryReceipt], timeout: float) -> DeliveryReceipt:
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            raise TransientPublishError(
                f"no acknowledgment within {timeout} s; the event may still be delivered later"
            ) from None

    def publish_encoded(self, encoded: EncodedEvent, topic: str | None = None) -> Future[DeliveryReceipt]:
        """Enqueue an already encoded event (to ``topic``, or where the router sends its type)."""
        if self._closed:
            raise PublishError("this DirectPublisher is closed; create a new one")
        if self._fatal is not None:
            raise TransientPublishError(
                f"the Kafka producer hit a fatal error ({self._fatal}); "
                "close this publisher and create a new one"
            )
        target = topic or self._router.topic_for(encoded.event_type)
        future: Future[DeliveryReceipt] = Future()
        future.set_running_or_notify_cancel()  # a delivery cannot be called back: refuse cancel()
        event_id = encoded.event_id

        def on_delivery(err: Any, msg: Any) -> None:
            if err is None:
                future.set_result(DeliveryReceipt(event_id, target, msg.partition(), msg.offset()))
            else:
                self._fail(future, _publish_error(err, event_id, target), event_id)

        deadline = time.monotonic() + self._enqueue_timeout
        while True:
            try:
                self._producer.produce(
                    target, encoded.value, encoded.key, headers=list(encoded.headers), on_delivery=on_delivery
                )
                return future
            except BufferError:
                if time.monotonic() >= deadline:
                    raise TransientPublishError(
                        "the local producer queue is full (the broker is slow or down); try again later"
                    ) from None
                time.sleep(0.01)
            except self._kafka_exception as exc:  # refused at once, e.g. larger than message.max.bytes
                self._fail(future, _publish_error(exc.args[0], event_id, target), event_id)
                return future
            except (TypeError, ValueError) as exc:
                self._fail(future, _publish_error(exc, event_id, target), event_id)
                return future

    def _fail(self, future: Future[DeliveryReceipt], error: PublishError, event_id: str) -> None:
        future.set_exception(error)
        if self._on_failure is not None:
            try:
                self._on_failure(event_id, error)
            except Exception:  # a failing callback must not break the poll thread
                log.exception("on_error callback failed", extra={"event": "direct.on_error_failed"})

    # ------------------------------------------------------------------ lifecycle
    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` s for queued events to be acknowledged; return how many are still queued."""
        left: int = self._producer.flush(timeout)
        return left

    def close(self, timeout: float = 30.0) -> None:
        """Flush (bounded by ``timeout``), fail what is still undelivered, stop the poll thread."""
        if self._closed:
            return
        self._closed = True
        self._stop_polling.set()
        self._thread.join()
        left = flush_then_purge(self._producer, timeout)
        if left:
            log.error(
                "closed with undelivered events; they are lost",
                extra={"event": "direct.close_undelivered", "count": left},
            )

    def aio(self, *, wait_for_ack: bool | None = None) -> AsyncDirectPublisher:
        """This publisher's asyncio face (``wait_for_ack`` defaults to this publisher's mode)."""
        return AsyncDirectPublisher(self, wait_for_ack=wait_for_ack)

    def __enter__(self) -> DirectPublisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _poll_loop(self) -> None:
        while not self._stop_polling.is_set():
            self._producer.poll(self._poll_interval)

    def _on_error(self, error: Any) -> None:
        if error.fatal():
            self._fatal = str(error.name())
            log.error("fatal producer error", extra={"event": "direct.producer_fatal", "code": error.name()})


class AsyncDirectPublisher(PublishMethodsMixin[Awaitable[None]]):
    """The asyncio face of a :class:`DirectPublisher` (same producer, same warning: it can lose events).

    Every method is a coroutine: ``await publisher.publish_payment_succeeded(event)`` returns once the
    broker acknowledged the event (raising a ``PublishError`` otherwise, or ``TransientPublishError``
    after ``ack_timeout``), or, with ``wait_for_ack=False``, as soon as it is queued. Build it with
    ``DirectPublisher(...).aio()`` or ``AsyncDirectPublisher(direct)``; ``await aclose()`` (or
    ``async with``) closes the underlying publisher without blocking the loop.
    """

    def __init__(self, direct: DirectPublisher, *, wait_for_ack: bool | None = None) -> None:
        self.direct = direct
        self._wait_for_ack = direct._wait_for_ack if wait_for_ack is None else wait_for_ack

    async def publish(self, event: PaymentEvent) -> None:
        """Publish ``event``; with ``wait_for_ack``, return once the broker acknowledged it."""
        future = self.publish_async(event)
        if self._wait_for_ack:
            await self._wait(future, self.direct._ack_timeout)

    async def publish_many(self, events: Iterable[PaymentEvent]) -> None:
        """Publish several events in order; with ``wait_for_ack``, return once all were acknowledged."""
        futures = [self.publish_async(event) for event in events]
        if self._wait_for_ack and futures:
            await self._wait(asyncio.gather(*futures), self.direct._ack_timeout)

    async def publish_and_wait(self, event: PaymentEvent, timeout: float = 30.0) -> DeliveryReceipt:
        """Publish ``event`` and return its :class:`DeliveryReceipt` once the broker acknowledged it."""
        receipt: DeliveryReceipt = await self._wait(self.publish_async(event), timeout)
        return receipt

    def publish_async(self, event: PaymentEvent) -> asyncio.Future[DeliveryReceipt]:
        """Queue ``event`` now; return an asyncio future of its receipt (must run inside a loop)."""
        return bridge(self.direct.publish_async(event), asyncio.get_running_loop())

    @staticmethod
    async def _wait(future: Awaitable[Any], timeout: float) -> Any:
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise TransientPublishError(
                f"no acknowledgment within {timeout} s; the event may still be delivered later"
            ) from None

    async def aclose(self, timeout: float = 30.0) -> None:
        """Close the underlying :class:`DirectPublisher` (its bounded flush runs in a worker thread)."""
        await asyncio.to_thread(self.direct.close, timeout)

    async def __aenter__(self) -> AsyncDirectPublisher:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def bridge(
    future: Future[DeliveryReceipt], loop: asyncio.AbstractEventLoop
) -> asyncio.Future[DeliveryReceipt]:
    """An asyncio future on ``loop`` settled like ``future``, which another thread (the poll thread's
    delivery callback) settles: the outcome is handed over with ``loop.call_soon_threadsafe``."""
    result: asyncio.Future[DeliveryReceipt] = loop.create_future()

    def settle(done: Future[DeliveryReceipt]) -> None:  # runs on the loop's thread
        if result.cancelled():
            return
        error = done.exception()
        if error is not None:
            result.set_exception(error)
        else:
            result.set_result(done.result())

    def hand_over(done: Future[DeliveryReceipt]) -> None:  # runs on the poll thread (or at once)
        try:
            loop.call_soon_threadsafe(settle, done)
        except RuntimeError:  # the loop is closed: nobody is waiting for this outcome any more
            log.debug("delivery outcome after the event loop closed", extra={"event": "direct.loop_closed"})

    future.add_done_callback(hand_over)
    return result


def _publish_error(error: Any, event_id: str, topic: str) -> PublishError:
    """Our error for a failed delivery, logged with ids only (never the payload or the key)."""
    from confluent_kafka import KafkaError

    from payment_events.kafka.producer import translate_error
    from payment_events.relay.delivery import DeliveryError, is_permanent

    if isinstance(error, KafkaError):
        described = translate_error(error)
    else:  # a bad argument type, for example
        described = DeliveryError("SERIALIZATION", type(error).__name__)
    permanent = is_permanent(described)
    log.warning(
        "direct publish failed",
        extra={
            "event": "direct.publish_failed",
            "event_id": event_id,
            "topic": topic,
            "code": described.code,
            "permanent": permanent,
        },
    )
    kind = PermanentPublishError if permanent else TransientPublishError
    return kind(f"event {event_id} was not published to {topic}: {described.reason()}")
