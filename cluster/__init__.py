"""The Kubernetes side of every component: the shared builders (`facesim.cluster.resources`: namespace,
images, security contexts, RBAC; `facesim.cluster.volumes`: the NFS StorageClass, PVCs and mounts), the
renderings that need no component code (the InferenceService, the PostgreSQL StatefulSet), what each
target cluster accepts, the image builds, and `facesim.cluster.client` (API clients, errors, SIGTERM)."""
