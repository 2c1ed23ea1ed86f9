"""``python -m scattermotion``: the command line."""

from scattermotion.cli import main

main()
