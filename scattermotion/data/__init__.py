"""Data: video decoding, fetched real data, ground-truth sets, synthetic generators."""
