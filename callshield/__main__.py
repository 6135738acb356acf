"""``python -m callshield``."""

from callshield.cli import main

main()
