from __future__ import annotations

from django.urls import path

from accounts.api import views

urlpatterns = [
    path("tokens", views.ApiTokenListCreateView.as_view(), name="token-list"),
    path("tokens/<int:token_id>", views.ApiTokenDetailView.as_view(), name="token-detail"),
]
