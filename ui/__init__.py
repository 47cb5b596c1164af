"""facesim's Flask web front end; talks to the predictor over HTTP only (never imports TensorFlow)."""
