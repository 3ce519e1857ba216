"""Retention settings: documented defaults, and out-of-range values refused at start-up."""

from __future__ import annotations

import pytest

from portal.config import ConfigError, load_settings

SECRET = "x" * 40


def test_defaults_keep_audit_forever_and_request_logs_90_days() -> None:
    settings = load_settings({"PORTAL_SECRET_KEY": SECRET})
    assert settings.request_log_retention_days == 90
    assert settings.audit_retention_days == 0
    assert settings.retention_batch_size == 5000
    assert settings.retention_archive_dir is None
    assert settings.retention_interval_s == 3600.0


def test_values_from_the_environment() -> None:
    settings = load_settings(
        {
            "PORTAL_SECRET_KEY": SECRET,
            "PORTAL_REQUEST_LOG_RETENTION_DAYS": "0",
            "PORTAL_AUDIT_RETENTION_DAYS": "365",
            "PORTAL_RETENTION_BATCH_SIZE": "100",
            "PORTAL_RETENTION_ARCHIVE_DIR": "/var/lib/portal/archive",
            "PORTAL_RETENTION_INTERVAL_S": "60",
        }
    )
    assert (settings.request_log_retention_days, settings.audit_retention_days) == (0, 365)
    assert (settings.retention_batch_size, settings.retention_interval_s) == (100, 60.0)
    assert settings.retention_archive_dir == "/var/lib/portal/archive"


def test_out_of_range_values_are_refused_all_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            {
                "PORTAL_SECRET_KEY": SECRET,
                "PORTAL_REQUEST_LOG_RETENTION_DAYS": "-1",
                "PORTAL_AUDIT_RETENTION_DAYS": "-5",
                "PORTAL_RETENTION_BATCH_SIZE": "0",
                "PORTAL_RETENTION_INTERVAL_S": "0.5",
            }
        )
    text = "\n".join(info.value.problems)
    assert len(info.value.problems) == 4
    for name in (
        "PORTAL_REQUEST_LOG_RETENTION_DAYS",
        "PORTAL_AUDIT_RETENTION_DAYS",
        "PORTAL_RETENTION_BATCH_SIZE",
        "PORTAL_RETENTION_INTERVAL_S",
    ):
        assert name in text
