"""The Payment table."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):
    """Create shop_payment."""

    initial = True
    dependencies: ClassVar[list[tuple[str, str]]] = []
    operations: ClassVar[list[Any]] = [
        migrations.CreateModel(
            name="Payment",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("payment_id", models.CharField(max_length=64, unique=True)),
                ("order_id", models.CharField(max_length=64)),
                ("amount_minor", models.BigIntegerField()),
                ("currency", models.CharField(max_length=3)),
            ],
        )
    ]
