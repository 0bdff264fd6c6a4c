"""Shared test support, importable from every test directory as ``support`` (pytest's
``pythonpath`` in pyproject.toml puts ``tests/`` on ``sys.path``).

- :mod:`support.net`: ``free_port``, ``wait_until`` (bounded polling), ``unique`` names.
- :mod:`support.data`: synthetic data makers (``gaussian_stream``, ``Clusters``, ``one_hot``,
  ``npz_bytes``, ``json_chunk``).
- :mod:`support.redis_fixtures`: a real Redis (``REDIS_URL`` or one embedded redis-server per
  session), session and per-test key prefixes that are cleaned up, an ``IndexStore`` per test.
- :mod:`support.redis_cluster`: a real 3-master Redis Cluster on loopback ports (session).
- :mod:`support.processes`: ``hashstream serve``/``worker`` subprocesses (``Proc``, ``Server``,
  ``LogReader``, ``service_env``) and ``assert_problem`` for problem+json answers.
- :mod:`support.faulty_store`: an ``IndexStore`` wrapper that injects commit and lock faults.
- :mod:`support.sdoh_round`: helpers of the SDOH-HC round tests (``run_stream``, trace checks).

The fixtures are registered in ``tests/conftest.py``; the helpers are imported directly.
"""
