"""The emulator: runs rendered TFJobs, Katib Experiments and InferenceServices on one machine as pods
(podman containers of the built images, or host processes in their own mount namespace)."""
