"""The `hashstream` command line and process supervision (serve, worker, eval)."""
