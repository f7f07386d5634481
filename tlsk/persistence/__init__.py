"""Model files: a fitted model and its metadata written and read together (joblib,
skops), and the trust rule that a shared file builds only what tlsk allows."""
