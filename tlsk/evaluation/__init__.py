"""Stage 5, evaluation: the classifiers offered for bottleneck features, label errors,
plots, and the HTML reports of an evaluation or a check of a folder."""
