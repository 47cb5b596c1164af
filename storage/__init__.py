"""Storage: datasets and LFW protocol, the crop cache, fetching, paths and URIs, the model card."""
