"""scikit-learn's estimator checks on every tlsk estimator.

tlsk's estimators take images, not the 2-D tables that scikit-learn's data
checks generate (check_fit2d_1sample, check_transformer_general,
check_estimators_dtypes, ...), and say so in their tags (``two_d_array=False``,
``three_d_array=True``). ``parametrize_with_checks`` then yields no check at
all for them, so the input-independent API checks run here one by one; the
data checks' promises (fit returns self, output dtype and shape, order, clone
in GridSearchCV) are tested with images in test_features.py and
test_keras_estimators.py.
"""

import inspect
import re
import warnings

import pytest
from sklearn.base import clone
from sklearn.exceptions import SkipTestWarning
from sklearn.utils import estimator_checks as checks

from tlsk import (
    ImageFeatureExtractor,
    KerasFineTuneClassifier,
    SmallCNNClassifier,
    VGG16FeatureExtractor,
    ZeroShotImageClassifier,
)


def _estimators():
    return [
        VGG16FeatureExtractor(weights=None, input_size=32, batch_size=4),
        ImageFeatureExtractor(
            backbone="mobilenet_v3_large", weights=None, input_size=32, batch_size=4
        ),
        SmallCNNClassifier(input_size=32, filters=(4, 8, 8), epochs=1),
        KerasFineTuneClassifier(weights=None, input_size=32, head_epochs=1),
        ZeroShotImageClassifier(classes=["cat", "dog"]),
    ]


API_CHECKS = [
    checks.check_estimator_cloneable,
    checks.check_estimator_repr,
    checks.check_no_attributes_set_in_init,
    checks.check_get_params_invariance,
    checks.check_set_params,
    checks.check_do_not_raise_errors_in_init_or_set_params,
    checks.check_mixin_order,
    checks.check_valid_tag_types,
    checks.check_estimator_tags_renamed,
    checks.check_parameters_default_constructible,
]


@pytest.mark.parametrize("estimator", _estimators(), ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_api_checks(estimator, check):
    name = type(estimator).__name__
    check(name, estimator)


@pytest.mark.parametrize("estimator", _estimators(), ids=lambda e: type(e).__name__)
def test_data_checks_are_declared_inapplicable_by_the_tags(estimator):
    # The tags keep scikit-learn from feeding tables to an image estimator;
    # if they stopped doing so, the checks listed above would start to run.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        collected = list(checks._yield_all_checks(estimator, legacy=True))
    assert collected == []
    assert any(issubclass(w.category, SkipTestWarning) for w in caught)


# Each estimator's first parameter, and a value of it other than its default.
KEYWORD_ONLY = [
    (KerasFineTuneClassifier, "backbone", "resnet50"),
    (SmallCNNClassifier, "filters", (8, 16)),
    (ZeroShotImageClassifier, "backbone", "clip_vit_base_patch16"),
]


@pytest.mark.parametrize(
    "cls, first, value", KEYWORD_ONLY, ids=[c.__name__ for c, _, _ in KEYWORD_ONLY]
)
def test_a_positional_parameter_is_a_type_error_naming_its_keyword(cls, first, value):
    name = cls.__name__
    expected = f"{name} takes keyword arguments only: {name}({first}={value!r}, ...)"
    with pytest.raises(TypeError, match=f"^{re.escape(expected)}$"):
        cls(value)


@pytest.mark.parametrize(
    "cls, first, value", KEYWORD_ONLY, ids=[c.__name__ for c, _, _ in KEYWORD_ONLY]
)
def test_keyword_only_parameters_clone_get_and_set(cls, first, value):
    parameters = list(inspect.signature(cls).parameters.values())
    assert parameters[0].name == first
    assert {p.kind for p in parameters} == {inspect.Parameter.KEYWORD_ONLY}
    model = cls(**{first: value})
    assert model.get_params()[first] == value
    assert clone(model).get_params() == model.get_params()
    assert cls().set_params(**{first: value}).get_params() == model.get_params()
