from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from accounts import schema  # noqa: F401  (registers the OpenAPI auth schemes)
        from backserv_site.redaction import install_access_log_redaction

        # On the logger objects themselves: uvicorn configures its own handlers before
        # or after Django starts, and logger filters survive either order.
        install_access_log_redaction()
