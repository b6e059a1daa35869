"""Evaluators: reconstruction, codebook health and downstream quality of codes.

    errors = evaluators.reconstruction_errors(target, reconstruction, mask)
    health = evaluators.codebook_health(codes, token_mask, quantizer.spec)
    scores = evaluators.classify_codes(train_codes, train_mask, train_quantized, train_labels,
                                       test_codes, test_mask, test_quantized, test_labels,
                                       quantizer.spec)
    baseline = evaluators.raw_1nn_accuracy(train_series, train_mask, train_labels,
                                           test_series, test_mask, test_labels)

All run on whole evaluation sets on the host and return Python floats (or numpy arrays),
ready for a metric writer.
"""

from vqlearn.evaluators import codebook, eeg, graph, probe, reconstruction, speech
from vqlearn.evaluators.codebook import code_counts_per_symbol, codebook_health, token_statistics
from vqlearn.evaluators.probe import (classify_codes, code_histograms, code_sequences,
                                      euclidean_distances, knn_accuracy, knn_predict,
                                      levenshtein_distances, linear_probe_accuracy,
                                      pooled_embeddings, raw_1nn_accuracy)
from vqlearn.evaluators.reconstruction import reconstruction_errors

__all__ = [
    "codebook", "eeg", "graph", "probe", "reconstruction", "speech",
    "code_counts_per_symbol", "codebook_health", "token_statistics",
    "classify_codes", "code_histograms", "code_sequences", "euclidean_distances",
    "knn_accuracy", "knn_predict", "levenshtein_distances", "linear_probe_accuracy",
    "pooled_embeddings", "raw_1nn_accuracy",
    "reconstruction_errors",
]
