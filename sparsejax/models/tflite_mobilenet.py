"""MobileNetV2 (TF-slim) read from a quantized TFLite file and run in float (SPEC §4).

The one real ImageNet classifier of the shared assets is Google's TF-slim MobileNetV2
1.0/224, stored as a quantization-aware-trained TFLite flatbuffer: uint8 weights with one
scale and zero point per tensor, int32 biases, BatchNorm folded into the convolutions, fused
ReLU6, TF ``SAME`` padding, 1001 outputs of which index 0 is "background". This module is
its float reconstruction:

- weights ``w = scale · (q − zero_point)``; biases ``b = int32 · (s_in · s_w)``, the scale
  of the int32 accumulator (input activation scale times weight scale);
- activations in float32 (the file's activation quantization is not simulated), ReLU6 as
  ``clip(·, 0, 6)``;
- the input normalization ``2u − 1`` inside the model (TF-slim's inception preprocessing
  maps [0, 1] to [−1, 1]; the file's uint8 input is ``(q − 128) / 128``), so the model
  takes pixel space ``u`` in [0, 1] like every sparsejax model;
- the background logit dropped: output ``k`` is ImageNet class ``k`` in the sorted-WNID
  order (the graph's output ``k + 1``); the final softmax is left out (logits).

Loading walks the graph operator by operator against the layer plan the module runs
(:func:`layer_plan`): operator type, which tensor each operator reads, weight and output
shapes, strides, padding, fused activations and residual additions. Any difference stops
with a one-line :class:`~sparsejax.errors.CheckpointError` naming the operator, so a file
whose graph is not this network never loads with shuffled weights.

Every convolution goes through :func:`sparsejax.models.common.conv2d`: dense ones with its
loop-friendly VJP on XLA:CPU, depthwise ones (``groups = C``) as sums of shifted slices,
which XLA:CPU runs far faster than its grouped convolution.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from sparsejax.errors import CheckpointError
from sparsejax.models.common import conv2d

TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier, bytes 4..8 of a .tflite file

# (expansion t, output channels c, stride s) of each inverted-residual block of TF-slim's
# MobileNetV2 1.0 (V2_DEF, its repeats unrolled): expanded_conv, expanded_conv_1, ...
MOBILENET_V2_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (1, 16, 1),
    (6, 24, 2),
    (6, 24, 1),
    (6, 32, 2),
    (6, 32, 1),
    (6, 32, 1),
    (6, 64, 2),
    (6, 64, 1),
    (6, 64, 1),
    (6, 64, 1),
    (6, 96, 1),
    (6, 96, 1),
    (6, 96, 1),
    (6, 160, 2),
    (6, 160, 1),
    (6, 160, 1),
    (6, 320, 1),
)


@dataclasses.dataclass(frozen=True)
class Layer:
    """One TFLite operator of the network, in execution order.

    Attributes:
      op: the TFLite builtin operator name (``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``ADD``,
        ``AVERAGE_POOL_2D``, ``RESHAPE``, ``SOFTMAX``).
      path: where its variables live: ``(name,)`` for a top-level layer, ``(block, name)``
        inside an inverted-residual block; ``(block,)`` for a block's residual ``ADD``;
        ``()`` for the operators without variables after the last convolution.
      kernel: square kernel size of a convolution.
      stride: its stride (both axes).
      features: output channels (for the logits: classes + background).
      relu6: whether ReLU6 is fused into the operator.
    """

    op: str
    path: tuple[str, ...] = ()
    kernel: int = 1
    stride: int = 1
    features: int = 0
    relu6: bool = False


def block_name(i: int) -> str:
    """TF-slim's scope of inverted-residual block ``i``."""
    return "expanded_conv" if i == 0 else f"expanded_conv_{i}"


def layer_plan(
    blocks: tuple[tuple[int, int, int], ...] = MOBILENET_V2_BLOCKS,
    stem: int = 32,
    head: int = 1280,
    num_classes: int = 1000,
) -> tuple[Layer, ...]:
    """The operators of a TF-slim MobileNetV2 TFLite graph, in order.

    ``Conv`` (3×3, stride 2, ReLU6); per block an optional 1×1 ``expand`` (t ≠ 1, ReLU6), a
    3×3 ``depthwise`` (ReLU6), a linear 1×1 ``project`` and, when the stride is 1 and the
    channels do not change, the residual ``ADD``; ``Conv_1`` (1×1, ReLU6); global average
    pool; ``Logits`` (1×1, num_classes + 1 outputs, background first); reshape; softmax.
    """
    plan = [Layer("CONV_2D", ("Conv",), 3, 2, stem, True)]
    ch = stem
    for i, (t, c, s) in enumerate(blocks):
        name = block_name(i)
        if t != 1:
            plan.append(Layer("CONV_2D", (name, "expand"), 1, 1, ch * t, True))
        plan.append(Layer("DEPTHWISE_CONV_2D", (name, "depthwise"), 3, s, ch * t, True))
        plan.append(Layer("CONV_2D", (name, "project"), 1, 1, c, False))
        if s == 1 and c == ch:
            plan.append(Layer("ADD", (name,)))
        ch = c
    plan += [
        Layer("CONV_2D", ("Conv_1",), 1, 1, head, True),
        Layer("AVERAGE_POOL_2D"),
        Layer("CONV_2D", ("Logits",), 1, 1, num_classes + 1, False),
        Layer("RESHAPE"),
        Layer("SOFTMAX"),
    ]
    return tuple(plan)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``SAME`` padding of one axis: output ceil(size / stride), the extra
    row (if the total is odd) at the end: a stride-2 3×3 convolution on 224 pads (0, 1)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _relu6(x):
    return jnp.clip(x, 0.0, 6.0)


class _Conv(nn.Module):
    """A k×k convolution with bias (BatchNorm folded in), TF SAME padding, optional ReLU6."""

    features: int
    kernel: int
    stride: int
    relu6: bool

    @nn.compact
    def __call__(self, x):  # [B, H, W, C] -> [B, ceil(H/s), ceil(W/s), features]
        shape = (self.kernel, self.kernel, x.shape[-1], self.features)  # HWIO
        k = self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)
        b = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        x, k, b = nn.dtypes.promote_dtype(x, k, b)  # float64 inputs in x64 reference tests
        pad = tuple(tf_same_padding(n, self.kernel, self.stride) for n in x.shape[1:3])
        y = conv2d(x, k, (self.stride, self.stride), pad) + b.reshape(1, 1, 1, -1)
        return _relu6(y) if self.relu6 else y


class _Depthwise(nn.Module):
    """A k×k depthwise convolution (one filter per channel, multiplier 1) with bias, TF SAME
    padding, optional ReLU6. Kernel HWIO [k, k, 1, C]."""

    kernel: int
    stride: int
    relu6: bool

    @nn.compact
    def __call__(self, x):  # [B, H, W, C] -> [B, ceil(H/s), ceil(W/s), C]
        c = x.shape[-1]
        shape = (self.kernel, self.kernel, 1, c)  # HWIO, one input channel per group
        k = self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)
        b = self.param("bias", nn.initializers.zeros_init(), (c,), jnp.float32)
        x, k, b = nn.dtypes.promote_dtype(x, k, b)
        pad = tuple(tf_same_padding(n, self.kernel, self.stride) for n in x.shape[1:3])
        y = conv2d(x, k, (self.stride, self.stride), pad, groups=c) + b.reshape(1, 1, 1, -1)
        return _relu6(y) if self.relu6 else y


def _apply(layer: Layer, x):
    if layer.op == "DEPTHWISE_CONV_2D":
        return _Depthwise(layer.kernel, layer.stride, layer.relu6, name=layer.path[-1])(x)
    return _Conv(layer.features, layer.kernel, layer.stride, layer.relu6, name=layer.path[-1])(x)


class _Block(nn.Module):
    """An inverted-residual block: its convolutions and, when planned, the residual ADD."""

    layers: tuple[Layer, ...]

    @nn.compact
    def __call__(self, x):
        x0 = x
        for layer in self.layers:
            x = x + x0 if layer.op == "ADD" else _apply(layer, x)
        return x


class TFLiteMobileNetV2(nn.Module):
    """TF-slim MobileNetV2 in float: ``x: float32[B, H, W, 3] in [0, 1] -> float32[B,
    num_classes]`` logits (background dropped). Variables: ``params`` only, named after the
    TF-slim scopes (``Conv``, ``expanded_conv_3/expand``, ``Conv_1``, ``Logits``); the
    logits layer is a dense ``kernel [head, num_classes]``, ``bias [num_classes]``.

    Small ``blocks``/``stem``/``head`` give tiny variants for tests.
    """

    num_classes: int = 1000
    blocks: tuple[tuple[int, int, int], ...] = MOBILENET_V2_BLOCKS
    stem: int = 32
    head: int = 1280

    def plan(self) -> tuple[Layer, ...]:
        return layer_plan(self.blocks, self.stem, self.head, self.num_classes)

    @nn.compact
    def __call__(self, x):  # [B, H, W, 3]
        x = 2.0 * x - 1.0  # TF-slim inception normalization: [0, 1] -> [-1, 1]
        groups: dict[str, list[Layer]] = {}  # per scope, its operators in order
        for layer in self.plan():
            if layer.path:
                groups.setdefault(layer.path[0], []).append(layer)
        for scope, layers in groups.items():
            if scope == "Logits":
                x = jnp.mean(x, axis=(1, 2))  # AVERAGE_POOL_2D over the whole map: [B, C]
                x = _Dense(self.num_classes, name=scope)(x)
            elif len(layers[0].path) == 1:
                x = _apply(layers[0], x)
            else:
                x = _Block(tuple(layers), name=scope)(x)
        return x


class _Dense(nn.Module):
    """The 1×1 logits convolution on the pooled features, as a dense layer."""

    features: int

    @nn.compact
    def __call__(self, x):  # [B, C] -> [B, features]
        shape = (x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)
        return x @ kernel + bias.reshape(1, -1)


# ----------------------------------------------------------------------------------------
# Reading the flatbuffer
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class TFLiteTensor:
    """A tensor of the graph. ``data`` is None for activations; quantized tensors carry
    ``scale`` and ``zero_point`` (one entry, or one per slice along ``quantized_dim``)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None = None
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    quantized_dim: int = 0


@dataclasses.dataclass
class TFLiteOp:
    """An operator: its builtin name, input and output tensor ids (−1: an absent optional
    input) and its options (``stride``, ``padding``, ``activation``, ``dilation``,
    ``depth_multiplier``, ``filter``, ``beta``, where they apply)."""

    code: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict


@dataclasses.dataclass
class TFLiteGraph:
    """The single subgraph of a TFLite model, operators in execution order."""

    tensors: list[TFLiteTensor]
    ops: list[TFLiteOp]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


_DTYPES = {0: "float32", 2: "int32", 3: "uint8", 4: "int64", 9: "int8"}


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def read_tflite(path: str | os.PathLike) -> TFLiteGraph:
    """Parses a .tflite flatbuffer with the pure-Python ``tflite`` package.

    Raises:
      CheckpointError: not a TFLite file, a corrupt one, or not one subgraph.
    """
    path = Path(path)
    buf = path.read_bytes()
    if buf[4:8] != TFLITE_IDENTIFIER:
        raise CheckpointError(f"weights file {path}: not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        import tflite
    except ImportError:
        raise CheckpointError(
            f"weights file {path}: reading .tflite files needs the package tflite "
            "(pip install tflite)"
        ) from None
    try:
        return _parse(tflite, buf)
    except CheckpointError as e:
        raise CheckpointError(f"weights file {path}: {e}") from None
    except Exception as e:  # a truncated or corrupt flatbuffer fails anywhere in the walk
        reason = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(
            f"weights file {path}: corrupt TFLite flatbuffer ({type(e).__name__}: {reason[:120]})"
        ) from None


def _parse(tflite, buf: bytes) -> TFLiteGraph:
    model = tflite.Model.GetRootAs(buf, 0)
    if model.SubgraphsLength() != 1:
        raise CheckpointError(f"{model.SubgraphsLength()} subgraphs, expected one")
    g = model.Subgraphs(0)
    op_names = _enum_names(tflite.BuiltinOperator)
    act_names = _enum_names(tflite.ActivationFunctionType)
    pad_names = _enum_names(tflite.Padding)

    tensors = []
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        dtype = _DTYPES.get(t.Type(), f"type{t.Type()}")
        data = None
        b = model.Buffers(t.Buffer())
        # (files over 2 GiB keep data past the flatbuffer, at Buffer.Offset(): not read here)
        raw = b"" if b is None or not b.DataLength() else bytes(b.DataAsNumpy())
        if raw:
            if dtype not in _DTYPES.values():
                raise CheckpointError(f"tensor {i} has unsupported type {dtype}")
            data = np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape)
        q = t.Quantization()
        scale = zp = None
        qdim = 0
        if q is not None and q.ScaleLength():
            scale = np.asarray(q.ScaleAsNumpy(), np.float64)
            zp = np.asarray(q.ZeroPointAsNumpy(), np.int64) if q.ZeroPointLength() else None
            qdim = int(q.QuantizedDimension())
        tensors.append(TFLiteTensor(t.Name().decode(), shape, dtype, data, scale, zp, qdim))

    ops = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        oc = model.OperatorCodes(op.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = op_names.get(code, f"BUILTIN_{code}")
        ops.append(
            TFLiteOp(
                name,
                tuple(int(j) for j in op.InputsAsNumpy()) if op.InputsLength() else (),
                tuple(int(j) for j in op.OutputsAsNumpy()) if op.OutputsLength() else (),
                _options(tflite, op, name, act_names, pad_names),
            )
        )
    inputs = tuple(int(j) for j in g.InputsAsNumpy()) if g.InputsLength() else ()
    outputs = tuple(int(j) for j in g.OutputsAsNumpy()) if g.OutputsLength() else ()
    return TFLiteGraph(tensors, ops, inputs, outputs)


def _options(tflite, op, name, act_names, pad_names) -> dict:
    table = op.BuiltinOptions()
    classes = {
        "CONV_2D": tflite.Conv2DOptions,
        "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
        "AVERAGE_POOL_2D": tflite.Pool2DOptions,
        "ADD": tflite.AddOptions,
        "SOFTMAX": tflite.SoftmaxOptions,
    }
    if table is None or name not in classes:
        return {}
    o = classes[name]()
    o.Init(table.Bytes, table.Pos)
    out = {}
    if hasattr(o, "FusedActivationFunction"):
        out["activation"] = act_names.get(o.FusedActivationFunction(), "?")
    if hasattr(o, "StrideH"):
        out["stride"] = (o.StrideH(), o.StrideW())
        out["padding"] = pad_names.get(o.Padding(), "?")
    if hasattr(o, "DilationHFactor"):
        out["dilation"] = (o.DilationHFactor(), o.DilationWFactor())
    if hasattr(o, "DepthMultiplier"):
        out["depth_multiplier"] = o.DepthMultiplier()
    if hasattr(o, "FilterHeight"):
        out["filter"] = (o.FilterHeight(), o.FilterWidth())
    if hasattr(o, "Beta"):
        out["beta"] = o.Beta()
    return out


# ----------------------------------------------------------------------------------------
# Graph -> Flax variables
# ----------------------------------------------------------------------------------------


def _dequantize(t: TFLiteTensor, axis: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, float64 per-slice scales along ``axis``) of a uint8/int8 constant."""
    if t.data is None:
        raise CheckpointError(f"{what}: tensor {t.name!r} holds no constant data")
    if t.dtype not in ("uint8", "int8") or t.scale is None:
        raise CheckpointError(
            f"{what}: tensor {t.name!r} is {t.dtype}"
            + ("" if t.scale is not None else " without quantization")
            + "; this reader takes uint8/int8 weights with scales"
        )
    zp = t.zero_point if t.zero_point is not None else np.zeros_like(t.scale, np.int64)
    n = t.data.shape[axis]
    if t.scale.size not in (1, n) or (t.scale.size == n > 1 and t.quantized_dim != axis):
        raise CheckpointError(
            f"{what}: tensor {t.name!r} has {t.scale.size} scales along axis "
            f"{t.quantized_dim}; expected 1 or {n} along axis {axis}"
        )
    shape = [1] * t.data.ndim
    shape[axis] = -1
    scale = np.broadcast_to(t.scale, (n,))
    zp = np.broadcast_to(zp, (n,))
    w = (t.data.astype(np.float64) - zp.reshape(shape)) * scale.reshape(shape)
    return w, scale.astype(np.float64)


def _act_scale(t: TFLiteTensor, what: str) -> float:
    if t.scale is None or t.scale.size != 1:
        raise CheckpointError(f"{what}: activation tensor {t.name!r} has no per-tensor scale")
    return float(t.scale[0])


class _Walk:
    """The state of the walk: the tensor the next operator must read, its shape, and the
    input of the current block (for the residual ADD)."""

    def __init__(self, graph: TFLiteGraph, tensor: int):
        self.graph = graph
        self.tensor = tensor
        self.block = None
        self.block_input = tensor

    def shape(self, i: int) -> tuple[int, ...]:
        return self.graph.tensors[i].shape


def _fail(i: int, op: TFLiteOp, layer: Layer, msg: str):
    where = "/".join(layer.path) or layer.op
    raise CheckpointError(f"operator {i} ({op.code}, {where}): {msg}")


def _check_options(i, op, layer, stride=None, padding=None):
    o = op.options
    if stride is not None and tuple(o.get("stride", ())) != (stride, stride):
        _fail(i, op, layer, f"stride {o.get('stride')}, the module has ({stride}, {stride})")
    if padding is not None and o.get("padding") != padding:
        _fail(i, op, layer, f"padding {o.get('padding')}, the module has {padding}")
    want = "RELU6" if layer.relu6 else "NONE"
    if o.get("activation", "NONE") != want:
        _fail(i, op, layer, f"fused activation {o.get('activation')}, the module has {want}")
    if tuple(o.get("dilation", (1, 1))) != (1, 1):
        _fail(i, op, layer, f"dilation {o['dilation']}, the module has none")


def _conv(i, op, layer, walk):
    """Checks a CONV_2D / DEPTHWISE_CONV_2D and returns its float (kernel, bias)."""
    g = walk.graph
    if len(op.inputs) != 3 or op.inputs[2] < 0 or len(op.outputs) != 1:
        _fail(i, op, layer, "expected inputs (data, weights, bias) and one output")
    x, w, b = (g.tensors[j] for j in op.inputs)
    y = g.tensors[op.outputs[0]]
    if len(x.shape) != 4:
        _fail(i, op, layer, f"input {x.shape}, expected NHWC")
    b_, h, wd, c = x.shape
    depthwise = layer.op == "DEPTHWISE_CONV_2D"
    k, f = layer.kernel, (c if depthwise else layer.features)
    want_w = (1, k, k, c) if depthwise else (f, k, k, c)
    if w.shape != want_w:
        _fail(i, op, layer, f"weights {w.shape}, the module has {want_w}")
    if depthwise and op.options.get("depth_multiplier", 1) != 1:
        _fail(i, op, layer, f"depth multiplier {op.options['depth_multiplier']}, expected 1")
    if depthwise and f != layer.features:
        _fail(i, op, layer, f"{f} channels, the module has {layer.features}")
    _check_options(i, op, layer, stride=layer.stride, padding="SAME")
    ho, wo = -(-h // layer.stride), -(-wd // layer.stride)
    if y.shape != (b_, ho, wo, f):
        _fail(i, op, layer, f"output {y.shape}, the module gives {(b_, ho, wo, f)}")
    if b.shape != (f,) or b.dtype != "int32" or b.data is None:
        _fail(i, op, layer, f"bias {b.dtype}{b.shape}, expected constant int32 ({f},)")
    what = f"operator {i} ({op.code}, {'/'.join(layer.path)})"
    axis = 3 if depthwise else 0
    wf, w_scale = _dequantize(w, axis, what)
    s_in = _act_scale(x, what)
    acc_scale = s_in * w_scale  # [f] the int32 accumulator's scale
    if b.scale is not None and b.scale.size in (1, f):
        if not np.allclose(np.broadcast_to(b.scale, (f,)), acc_scale, rtol=1e-3):
            _fail(i, op, layer, "bias scale is not input scale × weight scale")
    bias = b.data.astype(np.float64) * acc_scale
    if depthwise:
        kernel = wf.transpose(1, 2, 0, 3)  # [1, k, k, C] -> HWIO [k, k, 1, C]
    else:
        kernel = wf.transpose(1, 2, 3, 0)  # OHWI -> HWIO
    walk.tensor = op.outputs[0]
    return kernel, bias


def variables_from_graph(
    graph: TFLiteGraph, module: TFLiteMobileNetV2, input_shape: tuple[int, int, int]
) -> dict:
    """Checks that ``graph`` is the network ``module`` runs and returns its float variables.

    Args:
      graph: a parsed TFLite graph (:func:`read_tflite`).
      module: the architecture (its :meth:`~TFLiteMobileNetV2.plan`).
      input_shape: (H, W, 3) the graph's input must have.

    Returns:
      ``{"params": ...}`` as float32 NumPy arrays, in the module's tree.

    Raises:
      CheckpointError: one line naming the first operator or tensor that differs.
    """
    plan = module.plan()
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise CheckpointError(
            f"the graph has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs, "
            "expected one of each"
        )
    x = graph.tensors[graph.inputs[0]]
    if x.shape != (1, *input_shape):
        raise CheckpointError(f"graph input {x.shape}, the model takes {(1, *input_shape)}")
    # The module normalizes u in [0, 1] to 2u - 1 in [-1, 1]: the file's uint8 input must
    # stand for the same range, (q - 128) / 128.
    s = None if x.scale is None else float(x.scale[0])
    z = None if x.zero_point is None else int(x.zero_point[0])
    if x.dtype != "uint8" or s is None or not np.isclose(s, 1 / 128) or z != 128:
        raise CheckpointError(
            f"graph input is {x.dtype} with scale {s} and zero point {z}; the module's "
            "normalization 2u - 1 needs uint8 (q - 128) / 128"
        )
    walk = _Walk(graph, graph.inputs[0])
    flat: dict[tuple[str, ...], np.ndarray] = {}
    ops = graph.ops
    for i, layer in enumerate(plan):
        if i >= len(ops):
            raise CheckpointError(
                f"the graph ends after {len(ops)} operators; the module has {len(plan)} "
                f"(next: {layer.op} {'/'.join(layer.path)})"
            )
        op = ops[i]
        if op.code != layer.op:
            _fail(i, op, layer, f"is {op.code}, the module has {layer.op} here")
        if layer.op != "ADD" and (not op.inputs or op.inputs[0] != walk.tensor):
            _fail(i, op, layer, f"reads tensor {op.inputs[:1]}, not the previous output")
        if layer.path and layer.path[0] != walk.block:  # a new scope: remember its input
            walk.block, walk.block_input = layer.path[0], walk.tensor
        if layer.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            kernel, bias = _conv(i, op, layer, walk)
            if layer.path == ("Logits",):  # [1, 1, C, 1 + K] -> dense [C, K], background off
                kernel, bias = kernel[0, 0, :, 1:], bias[1:]
            flat[("params", *layer.path, "kernel")] = kernel
            flat[("params", *layer.path, "bias")] = bias
        elif layer.op == "ADD":
            if len(op.inputs) != 2 or set(op.inputs) != {walk.tensor, walk.block_input}:
                _fail(i, op, layer, "does not add the block's input to its output")
            _check_options(i, op, layer)
            if graph.tensors[op.outputs[0]].shape != walk.shape(walk.tensor):
                _fail(i, op, layer, f"output {graph.tensors[op.outputs[0]].shape}")
            walk.tensor = op.outputs[0]
        elif layer.op == "AVERAGE_POOL_2D":
            b_, h, w, c = walk.shape(walk.tensor)
            if (
                tuple(op.options.get("filter", ())) != (h, w)
                or op.options.get("padding") != "VALID"
            ):
                got = f"{op.options.get('filter')} {op.options.get('padding')}"
                _fail(i, op, layer, f"pools {got}, the module averages the whole {h}x{w} map")
            _check_options(i, op, layer)
            walk.tensor = op.outputs[0]
            if walk.shape(walk.tensor) != (b_, 1, 1, c):
                _fail(i, op, layer, f"output {walk.shape(walk.tensor)}, expected {(b_, 1, 1, c)}")
        elif layer.op == "RESHAPE":
            walk.tensor = op.outputs[0]
            want = (1, module.num_classes + 1)
            if walk.shape(walk.tensor) != want:
                _fail(i, op, layer, f"output {walk.shape(walk.tensor)}, expected {want}")
        elif layer.op == "SOFTMAX":
            walk.tensor = op.outputs[0]
    if len(ops) != len(plan):
        extra = ", ".join(o.code for o in ops[len(plan) : len(plan) + 3])
        raise CheckpointError(
            f"the graph has {len(ops) - len(plan)} operator(s) after the module's last "
            f"({extra}, ...)"
        )
    if graph.outputs[0] != walk.tensor:
        raise CheckpointError("the graph's output is not the last operator's output")
    from flax import traverse_util

    return traverse_util.unflatten_dict(
        {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in flat.items()}
    )


def load_tflite(path: str | os.PathLike, module: TFLiteMobileNetV2, input_shape) -> dict:
    """Reads a .tflite file and returns the float variables of ``module`` (checked)."""
    graph = read_tflite(path)
    try:
        return variables_from_graph(graph, module, tuple(input_shape))
    except CheckpointError as e:
        raise CheckpointError(f"weights file {Path(path)} does not fit the module: {e}") from None
