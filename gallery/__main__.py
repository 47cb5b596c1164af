import sys

from facesim.gallery.cli import main

sys.exit(main())
