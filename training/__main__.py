import sys

from training.cli import worker_main

sys.exit(worker_main())
