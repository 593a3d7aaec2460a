"""Build llama.cpp's `llama-mtmd-cli` and `llama-quantize` for `gem-bench peer` (issue 28).

The source is the llama.cpp that the installed llama-cpp-python vendors in its sdist (pip download of the pinned
version), built with cmake into the benchmark's cache folder with the CPU flags our wheel was built with
(scripts/llama_cmake_args.sh), never into the runtime's install. A build whose binaries exist is reused.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("llama-mtmd-cli", "llama-quantize")


def pinned_version() -> str:
    return metadata.version("llama_cpp_python")


def cmake_cpu_flags() -> list[str]:
    """The flags scripts/llama_cmake_args.sh gives our wheel's build on this CPU."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "llama_cmake_args.sh")], capture_output=True,
                         text=True, check=True).stdout
    return out.split()


def vendored_source(work: Path, version: str | None = None) -> Path:
    """Unpack llama-cpp-python's sdist (downloaded once with pip) and return its vendor/llama.cpp."""
    version = version or pinned_version()
    src = work / "src"
    tree = src / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if (tree / "CMakeLists.txt").exists():
        return tree
    src.mkdir(parents=True, exist_ok=True)
    sdist = src / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps",
                        "--no-binary", ":all:", "-d", str(src)], check=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(src, filter="data")
    return tree


def binaries(work: Path) -> dict[str, Path]:
    return {t: work / "build" / "bin" / t for t in TARGETS}


def build(work: Path, jobs: int = 2, log=print) -> dict[str, Path]:
    """Configure and build the two tools in work/build (skipped when both binaries exist)."""
    work = Path(work)
    bins = binaries(work)
    if all(p.exists() for p in bins.values()):
        return bins
    tree = vendored_source(work)
    bdir = work / "build"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    flags = cmake_cpu_flags()
    configure = ["cmake", "-S", str(tree), "-B", str(bdir), *gen, "-DCMAKE_BUILD_TYPE=Release",
                 "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                 "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_TOOLS=ON", *flags]
    logf = work / "build.log"
    log(f"building {', '.join(TARGETS)} from {tree} ({' '.join(flags)}); log: {logf}")
    with open(logf, "a") as fh:
        for cmd in (configure, ["cmake", "--build", str(bdir), "--config", "Release", "-j", str(jobs),
                                "--target", *TARGETS]):
            fh.write("$ " + " ".join(cmd) + "\n")
            fh.flush()
            subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=True)
    missing = [str(p) for p in bins.values() if not p.exists()]
    if missing:
        raise RuntimeError(f"build finished without {missing}; see {logf}")
    return bins


def quantize(bins: dict[str, Path], src: Path, dst: Path, qtype: str = "Q4_K_M", threads: int = 2) -> Path:
    """llama-quantize SRC DST TYPE (cached: skipped when DST exists)."""
    if not dst.exists():
        tmp = dst.with_suffix(".part")
        subprocess.run([str(bins["llama-quantize"]), str(src), str(tmp), qtype, str(threads)], check=True,
                       stdout=subprocess.DEVNULL)
        os.replace(tmp, dst)
    return dst


def render_page(ecg: Path, out: Path) -> Path:
    """The ECG page our runtime draws from the signal (what GEM's image tower sees), as a PNG for both sides."""
    from gem_runtime import constants as K
    from gem_runtime.image import save_png
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg
    from gem_runtime.render import render_ecg_image

    if not out.exists():
        x, _ = preprocess_ecg(read_ecg(ecg))                                      # (12, 5000)
        save_png(render_ecg_image(x, fs=K.ECG_FS), out)
    return out


def _block_count(gguf_path: Path) -> int | None:
    if not gguf_path.exists():
        return None
    from gguf import GGUFReader
    field = GGUFReader(gguf_path).fields.get("llama.block_count")
    return int(field.contents()) if field is not None else None


def derive_llm(src: Path, dst: Path, layers: int, log=print) -> Path:
    """The LLaVA-1.5-shape Q4_K_M LLM from a GEM-7B-shape bundle's Q4_K_M of the same depth: both are LLaMA-2-7B
    tensors with random weights and the same 32000-piece vocabulary, and differ only in the name and the Vicuna chat
    template llama-mtmd-cli formats its prompt with. gguf-py's gguf-new-metadata copies the tensors (a minute for
    3.8 GB) instead of writing a 13 GB f16 and quantizing it (half an hour here)."""
    from .peer_models import VICUNA_TEMPLATE

    tmp = dst.with_suffix(".part")
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", "--force",
                    "--general-name", f"llava-1.5-7b-shape-{layers}L-random",
                    "--chat-template", VICUNA_TEMPLATE, str(src), str(tmp)],
                   check=True, capture_output=True)
    tmp.rename(dst)
    log(f"[peer] {dst.name}: {dst.stat().st_size / 1e9:.2f} GB, {src}'s tensors with LLaVA's name and chat "
        f"template ({time.time() - t0:.0f} s)")
    return dst


def prepare(layers: int, work: Path, ecg: Path, threads: int = 2, bundle: Path | None = None, build_cli: bool = True,
            need_llm: bool = True, log=print):
    """Everything the sides run on, built once and cached in `work`: llama.cpp's tools, the 32000-piece
    tokenizer, the GEM-7B-shape bundle at `layers` (gem-bench make-7b; or `bundle`), the LLaVA-1.5-shape LLM
    (f16 by gguf-py, then Q4_K_M by llama-quantize) and the f16 / q8_0 mmproj, and the ECG page."""
    from .gem7b import make_7b, make_tokenizer_32k
    from .peer import Files
    from .peer_models import MMPROJ_TYPES, write_llm, write_mmproj

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    bins = build(work, jobs=min(2, os.cpu_count() or 1), log=log) if build_cli else {}
    tok = make_tokenizer_32k(work / "tok32k", log)
    if bundle is None:
        bundle = work / f"gem7b-L{layers}" / "bundle"
        if not (bundle / "manifest.json").exists():
            if layers > 4:
                raise RuntimeError(f"{bundle}: a {layers}-layer GEM-7B bundle needs the torch model in RAM "
                                   "(~0.8 GB a layer in fp32); give --bundle: ours_image takes only its image "
                                   "encoder (any GEM-7B-shape bundle), ours_gem needs one of this depth")
            make_7b(layers, work / f"gem7b-L{layers}", threads=threads, tokenizer_dir=tok.parent, log=log)
    models = work / "models"
    llm = models / f"llava15-7b-L{layers}-q4_k_m.gguf"
    if need_llm and not llm.exists():
        if not bins:
            raise RuntimeError(f"{llm} is missing and llama-quantize is not built")
        if layers > 4 and _block_count(bundle / "llm-q4_k_m.gguf") == layers:
            derive_llm(bundle / "llm-q4_k_m.gguf", llm, layers, log)
        else:
            f16 = models / f"llava15-7b-L{layers}-f16.gguf"
            if not f16.exists():
                write_llm(f16, layers, tok, log=log)
            t0 = time.time()
            quantize(bins, f16, llm, "Q4_K_M", threads)
            log(f"[peer] {llm.name}: {llm.stat().st_size / 1e9:.2f} GB (llama-quantize Q4_K_M, "
                f"{time.time() - t0:.0f} s)")
            if layers > 4:
                f16.unlink()                         # 13 GB at 32 layers
    mmproj = {t: models / f"mmproj-clip-vit-l-14-336-{t}.gguf" for t in MMPROJ_TYPES}
    for t, path in mmproj.items():
        if build_cli and not path.exists():
            write_mmproj(path, t, log=log)
    image = render_page(ecg, work / f"page-{Path(ecg).stem}.png")
    return Files(bundle=bundle, llm=llm, mmproj=mmproj, image=image, mtmd_cli=bins.get("llama-mtmd-cli"),
                 extra={"llama_cpp_source": vendored_source(work) if bins else "", "tokenizer": tok,
                        "cmake_cpu_flags": " ".join(cmake_cpu_flags())})


if __name__ == "__main__":  # python -m benchmarks.peer_build [WORK]
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "work" / "peer")))
