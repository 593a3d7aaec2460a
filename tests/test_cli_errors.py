"""One error policy for the four commands: a user's mistake is one line and exit 2, our bug keeps its traceback."""
import dataclasses
import json
import shutil
from pathlib import Path

import click
import pytest

from clirun import run_main
from gem_runtime.bundle import Bundle, default_bundle, file_entry, write_manifest
from gem_runtime.cli_errors import run_cli
from gem_runtime.errors import ContextOverflowError, GemEdgeError


def _dicom() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("waveform_ecg.dcm"))




def _one_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ") and "Traceback" not in err, err
    return lines[0]


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(capsys):
    @click.command()
    @click.argument("what")
    def cmd(what):
        if what == "user":
            raise GemEdgeError("x.hea: a bad file")
        raise ValueError("an assertion of ours that failed")

    code, _, err = run_main(lambda a: run_cli(cmd, "tool", a), ["user"], capsys)
    assert code == 2 and _one_line(err, "tool") == "tool: error: x.hea: a bad file"
    code, _, err = run_main(lambda a: run_cli(cmd, "tool", a), [], capsys)        # a click usage error
    assert code == 2 and "Missing argument 'WHAT'" in _one_line(err, "tool")
    with pytest.raises(ValueError, match="an assertion of ours"):             # not turned into exit 2
        run_cli(cmd, "tool", ["bug"])


def test_gem_train_fit_without_a_tokenizer_is_one_line(tmp_path, capsys):
    from gem_train.cli import main

    data = tmp_path / "corpus"
    data.mkdir()
    code, _, err = run_main(main, ["fit", "--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "o")], capsys)
    line = _one_line(err, "gem-train")
    assert code == 2 and str(data / "tokenizer" / "tokenizer.model") in line and "gem-train tokenizer" in line


def test_gem_train_unknown_config_is_one_line(tmp_path, capsys):
    from gem_train.cli import main

    ckpt = tmp_path / "ckpt"
    shutil.copytree(Path(__file__).resolve().parents[1] / "checkpoints" / "demo", ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    del cfg["gem_edge"]                             # a real GEM config names its towers instead ...
    cfg["mm_vision_tower"] = "openai/clip-vit-huge"   # ... and this one is not known
    (ckpt / "config.json").write_text(json.dumps(cfg))
    code, _, err = run_main(main, ["eval", "--checkpoint", str(ckpt), "--data", str(tmp_path)], capsys)
    assert code == 2 and f"{tmp_path / 'records.json'}: not found" in _one_line(err, "gem-train")
    from gem_train.corpus import write_corpus

    write_corpus(tmp_path / "data", 1, seed=0, images=False, progress=False)
    code, _, err = run_main(main, ["eval", "--checkpoint", str(ckpt), "--data", str(tmp_path / "data")], capsys)
    assert code == 2 and "unknown mm_vision_tower 'openai/clip-vit-huge'" in _one_line(err, "gem-train")


def test_gem_export_and_gem_bench_usage_errors_are_one_line(tmp_path, capsys):
    from benchmarks.cli import main as bench
    from gem_export.cli import main as export

    code, _, err = run_main(export, ["build", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "b"),
                                 "--quant", "q8_0,q3_k"], capsys)
    assert code == 2 and "unknown q3_k; choose from" in _one_line(err, "gem-export")
    run = {"config": {"llm_layers": 2, "new_tokens": 8}, "stages": {}}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(run))
    b.write_text(json.dumps(run))
    code, _, err = run_main(bench, ["extrapolate", str(a), str(b), "--out", str(tmp_path / "e")], capsys)
    assert code == 2 and "two different depths" in _one_line(err, "gem-bench")


def test_a_gguf_llama_cpp_cannot_load_is_one_line(tmp_path, monkeypatch, capsys):
    """Hashes that match, content llama.cpp refuses: ModelLoadError, not a traceback (nor a crash)."""
    from gem_runtime.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    b = tmp_path / "b"
    shutil.copytree(default_bundle(), b)
    m = Bundle.open(b).manifest
    name = m.llm[m.default_quant]                              # the file gem-run loads
    (b / name).write_bytes(b"GGUF" + b"\xff" * 4096)
    write_manifest(b, dataclasses.replace(m, files={**m.files, name: file_entry(b / name)}))
    code, out, err = run_main(main, [str(_dicom()), "--bundle", str(b)], capsys)
    line = _one_line(err, "gem-run")
    assert code == 2 and f"{name}: llama.cpp could not load this GGUF file" in line


def test_a_prompt_longer_than_the_context_is_a_typed_error():
    from gem_runtime import Interpreter

    with Interpreter.load(n_ctx=256, threads=1) as gem:
        with pytest.raises(ContextOverflowError, match=r"prompt \d+ tok \+ 165 embeddings >= n_ctx 256"):
            gem.interpret(_dicom(), max_new_tokens=4)


@pytest.mark.parametrize("command", [["serve"], ["dicom-listen", "--out", "OUT"]])
def test_a_service_on_a_port_in_use_is_one_line_before_its_model_loads(tmp_path, capsys, command):
    """dicom-listen printed a traceback; serve printed its address, then uvicorn's error, and exited 3."""
    import socket

    from gem_runtime.cli import main

    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        args = [str(tmp_path / "out") if a == "OUT" else a for a in command] + ["--port", str(port)]
        code, _, err = run_main(main, args, capsys)
    line = [x for x in err.strip().splitlines() if "notice:" not in x]
    assert code == 2 and line == [f"gem-run: error: cannot listen on 127.0.0.1:{port}: Address already in use "
                                  f"(another service holds port {port}?)"], err


def test_a_listener_whose_out_cannot_be_written_is_one_line(tmp_path, capsys):
    from clirun import free_port
    from gem_runtime.cli import main

    (tmp_path / "file").write_text("not a folder")
    code, _, err = run_main(main, ["dicom-listen", "--out", str(tmp_path / "file" / "inbox"), "--port",
                                   str(free_port())], capsys)
    line = [x for x in err.strip().splitlines() if "notice:" not in x]
    assert code == 2 and line == [f"gem-run: error: --out {tmp_path / 'file' / 'inbox'}: cannot be written "
                                  "(Not a directory)"], err
