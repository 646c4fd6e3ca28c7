"""URLs of the Django example."""

from __future__ import annotations

from django.urls import path

from examples.django_shop.shop import views

urlpatterns = [path("payments", views.create_payment)]
