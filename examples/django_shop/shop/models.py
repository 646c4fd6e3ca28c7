"""The shop's payment row: what the event must never be split from."""

from __future__ import annotations

from django.db import models


class Payment(models.Model):
    """A captured payment (money in integer minor units)."""

    payment_id = models.CharField(max_length=64, unique=True)
    order_id = models.CharField(max_length=64)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
