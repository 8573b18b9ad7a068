from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Build tiny random demo models from configs (no network) for every task type that needs one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", nargs="?", default=str(settings.GENERATION["MODELS_DIR"]))

    def handle(self, *args: Any, directory: str, **options: Any) -> None:
        from generation.demo_models import build_demo_models

        for name, path in build_demo_models(Path(directory)).items():
            self.stdout.write(f"{name}: {path}")
