"""keyword_only: estimator parameters by keyword, and a positional call's error."""

import inspect

import numpy as np
import pytest

from tlsk._util.keyword_only import keyword_only


class Net:
    @keyword_only
    def __init__(self, *, backbone="vgg16", weights="imagenet"):
        self.backbone = backbone
        self.weights = weights


class TinyNet(Net):
    """Takes its parent's ``__init__``: messages name it, not the parent."""


def test_keyword_arguments_reach_init():
    net = Net(weights=None, backbone="resnet50")
    assert (net.backbone, net.weights) == ("resnet50", None)


def test_the_signature_is_inits():
    parameters = inspect.signature(Net).parameters
    assert list(parameters) == ["backbone", "weights"]
    assert parameters["backbone"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["backbone"].default == "vgg16"


def test_each_positional_value_is_shown_under_its_keyword():
    with pytest.raises(
        TypeError,
        match=r"^TinyNet takes keyword arguments only: "
        r"TinyNet\(backbone='vit', weights=None, \.\.\.\)$",
    ):
        TinyNet("vit", None, 3)


def test_a_large_value_is_shown_shortened():
    with pytest.raises(TypeError, match=r"Net\(backbone=array\(\[.*\.\.\.") as raised:
        Net(np.zeros(10_000))
    assert len(str(raised.value)) < 120


def test_an_init_with_positional_parameters_is_refused():
    with pytest.raises(TypeError, match=r"keyword-only parameters .*\['size'\]"):

        @keyword_only
        def __init__(self, size=32, *, pooling="avg"):
            pass
