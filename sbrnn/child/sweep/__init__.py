"""Sweeps: plan many child runs, execute them anywhere, record each as it finishes, resume.

- :mod:`.plan` — planning is pure: for every task and budget the baselines and the balanced
  configuration when asked, then random draws from the sampling space; the same command plans
  the same configurations, seeds and run ids on any machine. :mod:`.plan_file` reads a whole
  meta-sweep from a TOML plan file.
- :mod:`.executors` — one interface (:class:`~.executors.Executor`) over three ways to run
  *jobs* (tuples of configs): in this process, on local processes (joblib's loky), on a Dask
  cluster; and what a worker does with a job (:func:`~.executors.run_job`).
- :mod:`.coordinator` — :func:`~.coordinator.run_sweep`: the runs not yet recorded go to an
  executor; the coordinating process writes the records directory (workers never do), one
  atomic Parquet shard per run, so a crash or kill at any moment leaves whole shards only, and
  rerunning the same command finishes exactly the planned set, once each.
- :mod:`.claims` — leased claim files under ``DIR/.claims`` so that several sweeps on one
  directory (two terminals, two machines on a shared filesystem) train each run once.
"""
