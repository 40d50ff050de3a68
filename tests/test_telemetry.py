"""NNCF and the OpenVINO converter sent usage data (forked processes posting to Google Analytics) from every export:
with no consent file, openvino_telemetry takes consent as given. edgetransfer takes it as declined."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("nncf")

CONSENT = """
from openvino_telemetry.utils.opt_in_checker import OptInChecker
print(OptInChecker().check(enable_opt_in_dialog=False, disable_in_ci=True).name)  # what NNCF asks: no file
from edgetransfer.telemetry import decline_without_consent
decline_without_consent()
from nncf.telemetry.wrapper import NNCFTelemetry
print(NNCFTelemetry()._impl.consent)
"""


def test_no_usage_data_is_sent_without_a_consent_file(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}  # no ~/intel/openvino_telemetry consent file
    for key in ("CI", "TF_BUILD", "JENKINS_URL", "NNCF_CI", "NNCF_DEV"):  # the libraries' own switches
        env.pop(key, None)
    ran = subprocess.run([sys.executable, "-c", CONSENT], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-2000:]
    # NNCF creates its telemetry with enable_opt_in_dialog=False, which counts NO_FILE as consent (the reason for
    # this module); after decline_without_consent it is declined
    assert ran.stdout.split() == ["NO_FILE", "False"]
    assert not (tmp_path / "intel" / "openvino_ga_cid").exists()  # no client id made either


IMPORTED_FIRST = """
import nncf  # makes NNCF's telemetry object, consent given for want of a file
from nncf.telemetry import telemetry
print(telemetry._impl.consent)
from edgetransfer.telemetry import decline_without_consent
decline_without_consent()
print(telemetry._impl.consent)
"""


def test_nncf_imported_before_edgetransfer_declines_too(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL", "NNCF_CI", "NNCF_DEV")}
    ran = subprocess.run(
        [sys.executable, "-c", IMPORTED_FIRST], env={**env, "HOME": str(tmp_path)}, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.split() == ["True", "False"]


NNCF_BARS = """
import sys
from edgetransfer.telemetry import nncf_progress
from nncf.common.logging.track_progress import track
print("result", flush=True)
with nncf_progress():
    for _ in track(range(3), description="Statistics collection"):
        pass
    print("said by NNCF")
"""


def test_nncf_progress_bars_stay_out_of_a_redirected_log():
    """Export's log written to a file held each NNCF bar, drawn once finished, as a 200-character line among its own
    messages; what else NNCF prints still reaches stderr, and stdout (export's list of files) gets neither."""
    ran = subprocess.run([sys.executable, "-c", NNCF_BARS], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout == "result\n"
    assert "said by NNCF" in ran.stderr
    assert "\u2501" not in ran.stderr and "Statistics collection" not in ran.stderr
