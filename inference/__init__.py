"""The facenet KServe predictor, the gallery and the predict client."""
