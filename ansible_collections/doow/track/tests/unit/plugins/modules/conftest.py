# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.doow.track.tests.unit.plugins.modules.utils import module_env, runner  # noqa: F401 pylint: disable=unused-import


@pytest.fixture(autouse=True)
def no_cli_on_path(monkeypatch):
    """The CLI must come from the test's prefix, never from the developer's PATH."""
    monkeypatch.setenv('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')
