"""What every facesim component agrees on: the bottom layer, importing no other facesim package.

- `facesim.contract.api`: the predictor's HTTP contract (model name, limits, identity names,
  "same person").
- `facesim.contract.metrics_lines`: metric lines as training prints them and Katib reads them.
- `facesim.contract.version`: the code version recorded in artifacts and image tags.
"""
