"""Training: the embedding networks, triplet loss with online mining, P x K sampling, the multi-worker
custom loop, evaluation and export; launched as local workers or a TFJob."""
