"""Property-based tests (hypothesis) of array inputs to the extractor.

Row of issue 7: "shapes, dtypes, value ranges: the extractor either returns
correct-shaped finite output or raises a clear error". Whatever array (or
list of arrays) is drawn, ``transform`` returns float32 ``(n, 512)`` finite
rows, or raises ValueError/TypeError whose message says what was expected and
what was received (or which image, ``X[i]``); any other exception fails.
"""

import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.robustness._support import tiny
from tlsk.images.decode import ImageRangeWarning

SETTINGS = settings(
    max_examples=25,
    database=None,  # nothing written into the checkout
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

DTYPES = st.sampled_from(
    [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32]
    + [np.float64, np.bool_, np.complex64]
)
# Mostly valid image shapes, some of the wrong rank or channel count.
SHAPES = st.one_of(
    hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=12).map(
        lambda s: (s[0] % 3 + 1, s[1], s[2])
    ),
    st.tuples(
        st.integers(1, 3),
        st.integers(1, 12),
        st.integers(1, 12),
        st.sampled_from([1, 3]),
    ),
    hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4),
)
ELEMENTS = {
    "f": st.one_of(
        st.floats(0, 255, width=16),
        st.floats(allow_nan=True, allow_infinity=True, width=16),
    ),
}


@pytest.fixture(scope="module")
def extractor():
    return tiny().fit()


def _arrays(draw, shape=None):
    dtype = np.dtype(draw(DTYPES))
    shape = draw(SHAPES) if shape is None else shape
    elements = ELEMENTS.get(dtype.kind)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def image_batches(draw):
    return _arrays(draw)


@st.composite
def image_lists(draw):
    n = draw(st.integers(1, 3))
    return [
        _arrays(
            draw,
            draw(
                st.one_of(
                    st.tuples(st.integers(1, 9), st.integers(1, 9)),
                    st.tuples(
                        st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 2, 3])
                    ),
                )
            ),
        )
        for _ in range(n)
    ]


def _check(extractor, X, n):
    original = [np.array(x, copy=True) for x in (X if isinstance(X, list) else [X])]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImageRangeWarning)  # documented, valid
            out = extractor.transform(X)
    except (ValueError, TypeError) as err:
        message = str(err)
        # What was expected, and what was received or which image it was.
        assert "expected" in message, message
        assert "received" in message or re.search(r"\bX\b", message), message
        return
    assert out.dtype == np.float32 and out.shape == (n, extractor.n_features_out_)
    assert np.isfinite(out).all()
    after = X if isinstance(X, list) else [X]
    for before, now in zip(original, after, strict=True):
        np.testing.assert_array_equal(before, now)  # the caller's data untouched


@SETTINGS
@given(X=image_batches())
def test_any_array_gives_finite_rows_or_a_clear_error(extractor, X):
    _check(extractor, X, X.shape[0] if X.ndim else 0)


@SETTINGS
@given(X=image_lists())
def test_any_list_of_arrays_gives_finite_rows_or_a_clear_error(extractor, X):
    _check(extractor, X, len(X))
