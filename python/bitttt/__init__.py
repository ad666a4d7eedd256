"""Bit-TTT engine: ternary BitNet b1.58 language models with Test-Time-Training layers.

    import bitttt
    model = bitttt.Model.load("model.bitt")          # or a model directory
    session = bitttt.Session(model)
    for piece in session.generate("Once upon a time", max_new_tokens=50):
        print(piece, end="", flush=True)
    logits = session.forward([1, 2, 3])              # float32 (vocab_size,), a view: see forward()

Everything here is a thin binding over the C++ engine (``bitttt._ext``); C++ errors arrive as
ValueError (bad values, malformed files), OSError (unreadable or unwritable files) or
RuntimeError (requests this build cannot serve), with the engine's message.
"""
from bitttt._ext import (
    GenerateIterator,
    GenerateResult,
    Model,
    ModelConfig,
    Session,
    StreamingDecoder,
    Tokenizer,
    Trainer,
    check_device,
    cpu_isa,
    num_threads,
    set_num_threads,
    version,
)

__version__ = version()


def train(data: str, out_dir: str = "out", **options) -> Trainer:
    """Trains a Bit-TTT model with the C++ trainer and returns the finished Trainer.

    ``bitttt.train("stories.txt", "out", config=bitttt.ModelConfig(257, 64, 2, 0.1), steps=200)``
    runs the same loop as ``bitttt train`` (options: those of ``Trainer``) and leaves in out_dir
    metrics.jsonl, checkpoint.safetensors, model/ and model.bitt (load it with ``Model.load``).
    """
    trainer = Trainer(data, out_dir, **options)
    trainer.run()
    return trainer

__all__ = [
    "GenerateIterator",
    "GenerateResult",
    "Model",
    "ModelConfig",
    "Session",
    "StreamingDecoder",
    "Tokenizer",
    "Trainer",
    "check_device",
    "cpu_isa",
    "num_threads",
    "set_num_threads",
    "train",
    "version",
    "__version__",
]
