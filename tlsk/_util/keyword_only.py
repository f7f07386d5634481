"""Keyword-only estimator parameters, with an error that names the keyword.

tlsk's estimators take their parameters by keyword only, as scikit-learn's
do (``def __init__(self, *, ...)``): a value given by position would land
on whichever parameter happens to come first. Python's own error for one
("takes 1 positional argument but 2 were given") names no parameter;
:func:`keyword_only` gives one that says which keyword to write.
"""

import functools
import inspect
import reprlib

__all__ = ["keyword_only", "positional_call_message"]


def keyword_only(init):
    """Decorate ``__init__(self, *, ...)``: a positional call names its keywords.

    ``Estimator("resnet50")`` raises ``TypeError("Estimator takes keyword
    arguments only: Estimator(backbone='resnet50', ...)")``, each value
    under the parameter it would have filled by position. The signature
    stays ``init``'s (``functools.wraps``): scikit-learn's ``get_params``,
    ``set_params`` and ``clone`` read the same keyword-only parameters.

    Examples
    --------
    >>> class Net:
    ...     @keyword_only
    ...     def __init__(self, *, backbone="vgg16", weights="imagenet"):
    ...         self.backbone, self.weights = backbone, weights
    >>> Net(backbone="resnet50").backbone
    'resnet50'
    >>> Net("vit", None)
    Traceback (most recent call last):
    ...
    TypeError: Net takes keyword arguments only: Net(backbone='vit', weights=None, ...)
    """
    names = _keyword_only_names(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        if args:
            message = positional_call_message(type(self).__name__, names, args)
            raise TypeError(message)
        init(self, **kwargs)

    return wrapper


def positional_call_message(class_name, names, args):
    """The error for ``class_name(*args)``: the call written with ``names``.

    ``names`` are the keyword-only parameters in signature order; each of
    ``args`` is shown under the one it would have filled by position.
    """
    pairs = zip(names, args, strict=False)  # more args than names: those named
    written = ", ".join(f"{name}={reprlib.repr(value)}" for name, value in pairs)
    return f"{class_name} takes keyword arguments only: {class_name}({written}, ...)"


def _keyword_only_names(init):
    """The parameters of ``init`` after ``self``; all must be keyword-only."""
    parameters = list(inspect.signature(init).parameters.values())[1:]
    others = [p.name for p in parameters if p.kind is not p.KEYWORD_ONLY]
    if others:
        raise TypeError(
            f"{init.__qualname__} must take keyword-only parameters after self "
            f"(def __init__(self, *, ...)); {others} are not"
        )
    return [p.name for p in parameters]
