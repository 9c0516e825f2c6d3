"""Process defaults set by the package before torch loads."""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE"), ("", "")])
def test_openmp_threads_do_not_spin_unless_the_user_says_so(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import masktwins_cli, os; print(repr(os.environ.get('OMP_WAIT_POLICY')))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == repr(expected)
