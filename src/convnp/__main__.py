"""``python -m convnp``: the same as the ``convnp`` command."""

from convnp.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
