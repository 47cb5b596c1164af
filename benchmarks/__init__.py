"""Benchmarks: each measures a component side by side with a reference (face_recognition, exact search,
1 vs N workers) in one run; imported only by the CLI."""
