"""Running a loaded model on image files (evaluate, predict, train)."""

from __future__ import annotations


def show_progress(model, args):
    """Progress bars (stderr) while a loaded model extracts features, unless -q."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline) and "verbose" in model[0].get_params():
        model[0].set_params(verbose=0 if args.quiet else 1)


def predict_proba(model, paths):
    """``(probabilities, classes)`` of a tlsk model (a Pipeline or Keras classifier)."""
    import numpy as np

    proba = np.asarray(model.predict_proba(list(paths)), dtype=np.float64)
    return proba, np.asarray(model.classes_)
