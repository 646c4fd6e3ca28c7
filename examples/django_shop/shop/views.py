"""``POST /payments``: the payment row and its PaymentSucceeded event in one ``transaction.atomic()``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from examples.django_shop.shop.models import Payment
from payment_events import PaymentSucceeded
from payment_events.django import DjangoOutboxPublisher


class PaymentAborted(Exception):
    """Raised inside the transaction to show that a failure after publishing removes both."""


@csrf_exempt
@require_POST
def create_payment(request: HttpRequest) -> HttpResponse:
    """Store the payment and publish its event atomically; ``fail_after_publish`` rolls both back."""
    body = json.loads(request.body)
    try:
        with transaction.atomic():
            payment = Payment.objects.create(
                payment_id=body["payment_id"],
                order_id=body["order_id"],
                amount_minor=body["amount_minor"],
                currency=body["currency"],
            )
            event = PaymentSucceeded(
                payment_id=payment.payment_id,
                order_id=payment.order_id,
                amount_paid=payment.amount_minor,
                currency=payment.currency,
                payment_gateway="example",
                processed_at=datetime.now(UTC),
            )
            DjangoOutboxPublisher().publish_payment_succeeded(event)
            if body.get("fail_after_publish"):
                raise PaymentAborted
    except PaymentAborted:
        return JsonResponse({"status": "rolled back"}, status=409)
    return JsonResponse({"payment_id": payment.payment_id, "event_id": str(event.event_id)}, status=201)
