import sys

from facesim.training.cli import worker_main

sys.exit(worker_main())
