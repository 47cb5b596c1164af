"""The identity gallery: enrolled people, their embeddings and thumbnails (SQLite or PostgreSQL), the
search index and its persistence, following other replicas' writes, and the gallery's threshold calibration."""
