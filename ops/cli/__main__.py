"""`python -m remotegpu.ops.cli`: the `remotegpu` command without its console script."""

from remotegpu.ops.cli.app import main

if __name__ == "__main__":
    main()
