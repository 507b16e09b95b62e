"""``python -m genlab``: the same CLI as the ``genlab`` console script."""

from genlab.cli import main

if __name__ == "__main__":
    main()
