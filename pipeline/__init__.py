"""The kfp v2 pipeline: prepare data, (tune,) train, evaluate, gate on accuracy, build the gallery and
deploy; run here through kfp.local or submitted to Kubeflow Pipelines."""
