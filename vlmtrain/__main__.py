"""`python -m vlmtrain ...` works without the console script being installed."""

from vlmtrain.cli import main

if __name__ == "__main__":
    main()
