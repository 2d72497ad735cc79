"""Piccolo's app registration for Runwire's tables and migrations."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from runwire.db.tables import ALL_TABLES

APP_CONFIG = AppConfig(
    app_name="runwire",
    migrations_folder_path=str(Path(__file__).parent / "migrations"),
    table_classes=ALL_TABLES,
)
