"""The facenet KServe predictor, the gallery and the predict client."""

MODEL_NAME = "facenet"
