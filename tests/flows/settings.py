"""Run settings the flow tests share: the smallest built-in set whose audit can decide the default
gates (504 images pooled over 3 folds certify chance + 3.4 points for 6 identities), with cheap
attackers that still learn its expressions at 40 px."""

SMALL_DECIDABLE = {"n_characters": 6, "images_per_cell": 12, "size": 64, "entanglement": 0.0, "noise": 0.0}
FAST_POOLED_AUDIT = {"attackers": ["linear", "hog-svm"], "folds": 3, "cnn_epochs": 2, "cnn_width": 8,
                     "cnn_min_steps": 0, "linkage_repeats": 1, "pca_components": 16,
                     "unseen_attackers": ["knn-pixels"]}
