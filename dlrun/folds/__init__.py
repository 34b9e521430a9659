"""Stage after `run`: k-fold cross-validation and bagged ensembles, built from normal fold runs (cv.py), and a run
directory opened as one predictor, a single model or the fold models averaged (predictor.py)."""
