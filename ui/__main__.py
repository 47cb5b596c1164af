import sys

from facesim.ui.cli import main

# The container entrypoint: listen on every interface (the Service routes to the pod).
sys.exit(main(default_host="0.0.0.0"))
