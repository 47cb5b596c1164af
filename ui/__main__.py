import sys

from facesim.ui.cli import main

# The container entrypoint; like `facesim ui` it binds 127.0.0.1 unless told `--host 0.0.0.0`
# (the Dockerfile and the cluster Deployment say so).
sys.exit(main())
