"""Doctor's own outcomes (issue 10, case 20): a bad endpoint or a bad option is a failing check or a usage
error naming what is wrong, never an internal error (70, which is kept for doctor's own bugs)."""

from __future__ import annotations

import pytest

from tests.doctor.conftest import doctor
from tests.support.cli import KEY, run


@pytest.mark.parametrize("endpoint, named", [
    ("https://a..example", "host 'a..example' is not a valid DNS name"),
    ("http://xn--zz", "'http://xn--zz' is not a usable URL"),
    ("http://[::1", "'http://[::1'"),
])
def test_an_unusable_endpoint_fails_a_check_naming_it(endpoint, named):
    report = doctor("--endpoint", endpoint, "--api-key", KEY)
    assert report.code == 1, report.result.err
    assert report.failed() == ["config.schema"]
    detail = report.checks["config.schema"]["detail"]
    assert named in detail and "--endpoint" in detail
    assert "internal error" not in report.result.err


def test_a_config_path_that_is_a_directory_fails_the_config_check(tmp_path):
    report = doctor("--config", str(tmp_path), "--api-key", KEY)
    assert report.code == 1 and f"{tmp_path}: is a directory" in report.checks["config.schema"]["detail"]


@pytest.mark.parametrize("command, timeout", [("doctor", "nan"), ("doctor", "inf"), ("send", "-1"), ("stop", "0"),
                                              ("reload", "1e308")])
def test_a_timeout_that_is_no_number_of_seconds_is_a_usage_error(command, timeout):
    result = run([command, "--timeout", timeout])
    assert result.code == 64 and f"argument --timeout: must be more than 0 and at most 86400 seconds, not " \
                                  f"'{timeout}'" in result.err, result.err
