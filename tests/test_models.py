"""Registry, shapes, and the pure logits function that attacks take."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import models
from sparsejax.errors import UnknownNameError

SPEC_NAMES = ["lenet5-mnist", "smallcnn-mnist"] + [
    f"resnet{d}-cifar10" for d in (20, 32, 44, 56, 110)
]


def test_registry_has_the_spec_names():
    assert set(SPEC_NAMES) <= set(models.model_names())
    with pytest.raises(UnknownNameError, match="unknown model 'resnet18-cifar10'; known: "):
        models.get_spec("resnet18-cifar10")


def _conv(cin, cout, bias=True):
    return 9 * cin * cout + (cout if bias else 0)


def _dense(nin, nout):
    return nin * nout + nout


def _lenet5(side):
    return _conv(1, 32) + _conv(32, 64) + _dense((side // 4) ** 2 * 64, 200) + _dense(200, 10)


def _resnet(n):  # conv + BN (scale, bias) per layer; option-A shortcuts have no weights
    total, cin = _conv(3, 16, False) + 32, 16
    for planes in (16, 32, 64):
        for _ in range(n):
            total += _conv(cin, planes, False) + _conv(planes, planes, False) + 4 * planes
            cin = planes
    return total + _dense(64, 10)


@pytest.mark.parametrize("name", models.model_names())
def test_logits_shape_and_parameter_count(name):
    spec = models.get_spec(name)
    shapes = spec.variable_shapes()
    n_params = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes["params"]))
    # Shapes only: the ImageNet models' random init would cost seconds each.
    out = jax.eval_shape(
        lambda v, x: models.Model(spec, v, "shapes").logits_fn(x),
        shapes,
        jnp.zeros((3,) + spec.input_shape),
    )
    assert out.shape == (3, spec.num_classes)
    expected = {
        "lenet5-mnist": _lenet5(28),
        "lenet5-digits": _lenet5(8),
        "smallcnn-mnist": _conv(1, 32)
        + _conv(32, 32)
        + _conv(32, 64)
        + _conv(64, 64)
        + _dense(1024, 200)
        + _dense(200, 200)
        + _dense(200, 10),
    }
    expected.update({f"resnet{d}-cifar10": _resnet((d - 2) // 6) for d in (20, 32, 44, 56, 110)})
    # ResNet-20/32/44/56/110 give 0.27M/0.46M/0.66M/0.85M/1.7M, as He et al. Table 6.
    # The torchvision models: the parameter counts of torchvision's model documentation
    # (Inception-v3's 27,161,264 less its training-only AuxLogits: 3,326,696).
    expected.update(
        {
            "vgg16": 138_357_544,
            "vgg19": 143_667_240,
            "resnet18": 11_689_512,
            "resnet50": 25_557_032,
            "resnet101": 44_549_160,
            "resnet152": 60_192_808,
            "densenet161": 28_681_000,
            "inception_v3": 27_161_264 - 3_326_696,
            "mobilenet_v2": 3_504_872,
            # the TFLite file's 3,489,097 weights and biases less the background logit's
            "mobilenet_v2-tflite": 3_489_097 - 1_281,
        }
    )
    assert n_params == expected[name]


def test_new_weights_do_not_retrace():
    a, b = models.create("lenet5-digits", seed=0), models.create("lenet5-digits", seed=1)
    chex.clear_trace_counter()
    f = jax.jit(chex.assert_max_traces(lambda fn, x: fn(x), n=1))
    x = jnp.ones((2, 8, 8, 1))
    ya = f(a.logits_fn, x)
    yb = f(b.logits_fn, x)  # a second trace would raise
    assert not np.allclose(ya, yb)


def test_normalization_is_inside_the_model():
    m = models.create("resnet20-cifar10")
    assert m.bounds == (0.0, 1.0)
    x = jnp.full((1, 32, 32, 3), 0.5)
    # Shifting the input by one std in channel 0 is not the identity: the model normalizes.
    assert not np.allclose(m.logits_fn(x), m.logits_fn(x.at[..., 0].add(0.229)))


def test_predict_pads_the_last_batch():
    m = models.create("lenet5-digits")
    x = np.random.default_rng(0).uniform(0, 1, (7, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x, batch_size=3), np.asarray(m.logits_fn(x)), atol=1e-5)


@pytest.mark.parametrize(
    "stride,padding,size,groups,channels",
    [
        # few input channels or a stride: dx by one product and a sum of taps (col2im)
        ((1, 1), ((1, 1), (1, 1)), (9, 9), 1, (4, 5)),
        ((2, 2), ((1, 1), (1, 1)), (8, 8), 1, (4, 5)),
        ((2, 2), ((1, 1), (1, 1)), (8, 8), 1, (8, 5)),
        # 8 or more input channels, stride 1: dx as XLA's transposed convolution
        ((1, 1), ((1, 1), (1, 1)), (9, 9), 1, (8, 5)),
        ((1, 1), ((0, 0), (2, 1)), (7, 6), 1, (9, 3)),
        ((2, 2), ((1, 1), (1, 1)), (9, 7), 1, (4, 5)),
        ((1, 1), ((0, 0), (0, 0)), (7, 6), 1, (4, 5)),
        ((2, 1), ((0, 0), (1, 1)), (10, 5), 1, (4, 5)),
        # grouped (XLA's feature_group_count, a custom VJP with batch_group_count)
        ((1, 1), ((1, 1), (1, 1)), (9, 9), 2, (4, 6)),
        ((2, 2), ((1, 1), (1, 1)), (9, 7), 3, (6, 9)),
        # depthwise (shifted slices): multiplier 1 as MobileNetV2's, 2, odd strides/padding
        ((1, 1), ((1, 1), (1, 1)), (9, 9), 6, (6, 6)),
        ((2, 2), ((1, 1), (1, 1)), (8, 8), 6, (6, 6)),
        ((2, 2), ((1, 1), (1, 1)), (9, 7), 4, (4, 8)),
        ((2, 1), ((0, 0), (2, 1)), (10, 5), 4, (4, 4)),
    ],
)
def test_conv2d_gradients_equal_jax_rule(stride, padding, size, groups, channels):
    """The custom VJP (canonical layouts, fast inside loops) and the depthwise path compute
    JAX's own values and gradients (``feature_group_count`` = PyTorch's ``groups``)."""
    from jax import lax

    from sparsejax.models.common import conv2d

    rng = np.random.default_rng(0)
    cin, cout = channels
    x = jnp.asarray(rng.normal(size=(3, *size, cin)).astype(np.float32))
    k = jnp.asarray(rng.normal(size=(3, 3, cin // groups, cout)).astype(np.float32))
    ref = lambda x, k: lax.conv_general_dilated(
        x,
        k,
        stride,
        padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )
    out, vjp = jax.vjp(lambda x, k: conv2d(x, k, stride, padding, groups), x, k)
    out_ref, vjp_ref = jax.vjp(ref, x, k)
    tol = 1e-6 if groups == 1 else 1e-5  # the depthwise sum adds its taps in its own order
    np.testing.assert_allclose(out, out_ref, rtol=tol, atol=tol)
    g = jnp.asarray(rng.normal(size=out.shape).astype(np.float32))
    for a, b in zip(vjp(g), vjp_ref(g), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(8, 8), (9, 7)])
def test_max_pool_values_and_gradient_are_flax_and_pytorch(size):
    """Values of flax's max_pool; the gradient goes to the first maximum of each block in
    row-major order (PyTorch's rule), ties included; rows past the last block get none."""
    import flax.linen as nn

    from sparsejax.models.common import max_pool

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, *size, 3)).astype(np.float32)
    x[0, 0:2, 0:2, 0] = 1.5  # a four-way tie: only (0, 0) gets the gradient
    x[1, 2, 3, 1] = x[1, 3, 2, 1] = 9.0  # a two-way tie: (2, 3) comes first in row-major
    x = jnp.asarray(x)
    out, vjp = jax.vjp(lambda x: max_pool(x, (2, 2)), x)
    np.testing.assert_array_equal(out, nn.max_pool(x, (2, 2), strides=(2, 2)))
    g = jnp.asarray(rng.normal(size=out.shape).astype(np.float32))
    (gx,) = vjp(g)
    # NumPy reference: each block's first argmax receives the block's cotangent.
    ref = np.zeros(x.shape, np.float32)
    xn, gn = np.asarray(x), np.asarray(g)
    for b, i, j, c in np.ndindex(*gn.shape):
        block = xn[b, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, c]
        di, dj = np.unravel_index(np.argmax(block), block.shape)
        ref[b, 2 * i + di, 2 * j + dj, c] = gn[b, i, j, c]
    np.testing.assert_array_equal(gx, ref)
    assert float(gx[0, 0, 0, 0]) == float(g[0, 0, 0, 0]) and float(gx[0, 0, 1, 0]) == 0.0
    assert float(gx[1, 2, 3, 1]) == float(g[1, 1, 1, 1]) and float(gx[1, 3, 2, 1]) == 0.0
