"""`python -m benchmarks`. Guarded: cell processes are spawned and re-import this module."""

if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main())
