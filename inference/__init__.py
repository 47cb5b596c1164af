"""Serving: the facenet KServe predictor (decode, detect, align, embed, search the gallery), the V1/V2
protocol, its routes and HTTP guard, and running it as a local process."""
