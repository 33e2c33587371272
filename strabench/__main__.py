"""``python -m strabench`` runs the command line."""

from strabench.cli import main

main()
