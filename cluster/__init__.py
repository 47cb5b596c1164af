"""What every facesim cluster resource shares, below the components that build their own:
`facesim.cluster.resources` (namespace, images, security contexts, volumes, RBAC, API errors)
and `facesim.cluster.client` (Kubernetes API clients from a kubeconfig or the pod)."""
