"""The Kubernetes side of every component: the shared builders of `facesim.cluster.resources`
(namespace, images, security contexts, volumes, RBAC), each component's own rendering that needs no
component code (the InferenceService, the PostgreSQL StatefulSet), what each target cluster accepts,
the image builds, and `facesim.cluster.client` (API clients, errors that say what to do, SIGTERM)."""
