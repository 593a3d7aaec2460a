"""A record with no usable signal never reaches the model, whether a reader made it or a caller built it by hand;
the leads a reader kept with a problem reach the JSON."""
import json

import numpy as np
import pytest
from clirun import run_main

from gem_runtime import EcgReadError, EcgRecord, Interpreter
from gem_runtime.cli import main
from gem_runtime.constants import LEADS


def _record(signal: np.ndarray) -> EcgRecord:
    return EcgRecord(signal=signal.astype(np.float32), fs=500.0, leads=LEADS, source="hand-built")


@pytest.mark.parametrize("what", ["flat", "inf"])
def test_a_hand_built_record_without_signal_is_refused_before_the_model(tiny_bundle, what):
    x = np.zeros((12, 5000))
    if what == "inf":
        x = np.random.default_rng(0).standard_normal((12, 5000)) * 0.3
        x[4, 100] = np.inf
    with Interpreter.load(tiny_bundle, threads=1) as gem:
        with pytest.raises(EcgReadError, match="hand-built"):
            gem.interpret(_record(x), max_new_tokens=4)


def test_the_leads_off_cart_file_is_refused_in_one_line(shared_data, capsys):
    code, out, err = run_main(main, ["measure", str(shared_data / "real/philips/129ECORG_leads_off.xml"), "--json"],
                              capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "lead" in err, err


def test_measure_json_carries_the_lead_issues_key(shared_data, capsys):
    code, out, err = run_main(main, ["measure", str(shared_data / "real/muse/muse-sinus.xml"), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["lead_issues"] == {}


def test_pure_noise_gives_no_numbers_and_never_reaches_the_model(tiny_bundle, tmp_path, capsys):
    path = tmp_path / "noise.npy"
    np.save(path, (np.random.default_rng(1).standard_normal((12, 5000)) * 0.5).astype(np.float32))
    code, out, err = run_main(main, ["measure", str(path), "--fs", "500", "--json"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "signal" in err, err
    code, out, err = run_main(main, [str(path), "--fs", "500", "--bundle", str(tiny_bundle), "--threads", "1"],
                              capsys)
    assert code == 2 and out == "" and "signal" in err, (out, err)
