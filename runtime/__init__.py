"""gem-edge runtime: interpret an ECG file offline from a bundle. numpy, ONNX Runtime, llama.cpp; never torch.

    from gem_runtime import Interpreter
    with Interpreter.load() as gem:
        print(gem.interpret("ecg.hea").text)
"""

__all__ = ["Interpreter", "Result", "read_ecg", "EcgRecord"]


def __getattr__(name):  # lazy: gem_train imports the constants without pulling in llama.cpp
    if name in ("Interpreter", "Result"):
        from . import interpreter

        return getattr(interpreter, name)
    if name in ("read_ecg", "EcgRecord"):
        from . import readers

        return getattr(readers, name)
    raise AttributeError(name)
